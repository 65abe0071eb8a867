"""Retry policy: what may be resent, when, and how often. All of it lives here.

Each failure carries a :class:`~wachat_async.errors.FailureClass`:

- ``NOT_SENT`` (DNS, refused, connect timeout): any call is resent.
- ``THROTTLED`` (429, 503, 408): resent after ``Retry-After``; a server asking for more than
  ``max_retry_after`` fails the call at once.
- ``AMBIGUOUS`` (read timeout, reset after sending, 500/502/504): resent only when the call is
  idempotent, or when reconciliation proved that nothing happened.
- ``FATAL``: raised at once.

A fresh :class:`tenacity.AsyncRetrying` is built per call (its statistics are per instance and
would race if shared). Cancellation is never retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import attrs
import tenacity

from .errors import FailureClass, WachatError

if TYPE_CHECKING:
    from ._http import Call

logger = logging.getLogger("wachat_async")

T = TypeVar("T")


@attrs.frozen
class RetryPolicy:
    """How a client retries. Frozen; derive variants with :func:`attrs.evolve`."""

    #: Retries after the first attempt.
    max_retries: int = 2
    #: First backoff ceiling in seconds; doubles per retry (full jitter picks in [0, ceiling]).
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    #: No retry is started that would end after this many seconds since the call began.
    total_budget: float = 120.0
    #: The longest ``Retry-After`` honoured; a server asking for more fails the call at once.
    max_retry_after: float = 60.0

    def backoff(self, retry_number: int) -> float:
        """Full-jitter exponential backoff before retry number ``retry_number`` (1-based)."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (retry_number - 1))
        return random.uniform(0.0, ceiling)


def mark_resend_safe(exc: WachatError) -> WachatError:
    """Record that reconciliation proved an ambiguous attempt had no effect."""
    exc._resend_safe = True  # type: ignore[attr-defined]
    return exc


def is_retryable(exc: BaseException, call: Call, policy: RetryPolicy) -> bool:
    if not isinstance(exc, WachatError):
        return False  # cancellation, programming errors
    failure = exc.failure
    if failure is FailureClass.NOT_SENT:
        return True
    if failure is FailureClass.THROTTLED:
        retry_after: float | None = getattr(exc, "retry_after", None)
        return retry_after is None or retry_after <= policy.max_retry_after
    if failure is FailureClass.AMBIGUOUS:
        return call.idempotent or getattr(exc, "_resend_safe", False)
    return False


async def retry_after_failure(
    call: Call,
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    failure: WachatError,
    started: float,
) -> T:
    """Take over after a failed first attempt: raise ``failure`` if it may not be retried, else
    run the retries under the policy.

    The first attempt runs in the caller, outside tenacity: building and driving tenacity costs
    ~17 µs, about a tenth of a request's client CPU, and most calls succeed at once.
    ``started`` is when the first attempt began (``time.monotonic()``).
    """
    if policy.max_retries == 0 or not is_retryable(failure, call, policy):
        raise failure
    return await _retry(call, attempt, policy, failure, started)


async def _retry(
    call: Call,
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    first_failure: WachatError,
    started: float,
) -> T:
    """Retries 1..max_retries, after ``first_failure``. Attempt numbers count the first one."""

    def wait_after(exc: BaseException | None, attempts_made: int) -> float:
        retry_after: float | None = getattr(exc, "retry_after", None)
        return retry_after if retry_after is not None else policy.backoff(attempts_made)

    def log_retry(exc: BaseException | None, attempts_made: int, wait: float) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            failure = getattr(exc, "failure", None)
            logger.debug(
                "retrying %s: attempt %d failed (%s: %s); waiting %.2f s",
                call.operation,
                attempts_made,
                failure.value if failure else "unknown",
                exc,
                wait,
            )

    first_wait = wait_after(first_failure, 1)
    if time.monotonic() - started + first_wait >= policy.total_budget:
        raise first_failure
    log_retry(first_failure, 1, first_wait)
    await asyncio.sleep(first_wait)

    def wait(state: tenacity.RetryCallState) -> float:
        return wait_after(
            state.outcome.exception() if state.outcome else None, state.attempt_number + 1
        )

    def before_sleep(state: tenacity.RetryCallState) -> None:
        log_retry(
            state.outcome.exception() if state.outcome else None,
            state.attempt_number + 1,
            state.upcoming_sleep,
        )

    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(policy.max_retries)
        | tenacity.stop_before_delay(policy.total_budget - (time.monotonic() - started)),
        wait=wait,
        retry=tenacity.retry_if_exception(lambda exc: is_retryable(exc, call, policy)),
        before_sleep=before_sleep,
        reraise=True,
    )
    async for trial in retrying:
        with trial:
            try:
                return await attempt()
            except WachatError as exc:
                exc.attempts = trial.retry_state.attempt_number + 1
                raise
    raise AssertionError("unreachable: tenacity either returns or reraises")  # pragma: no cover
