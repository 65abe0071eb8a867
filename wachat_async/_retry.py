"""The retry policy: what may be resent, when, and how often; and the one loop that applies it.

Each failure carries a :class:`~wachat_async.errors.FailureClass`:

- ``NOT_SENT`` (DNS, refused, connect timeout): any call is resent.
- ``THROTTLED`` (429, 503, 408): resent after ``Retry-After``; a server asking for more than
  ``max_retry_after`` fails the call at once.
- ``AMBIGUOUS`` (read timeout, reset after sending, 500/502/504): resent only when the call is
  idempotent, or when reconciliation proved that nothing happened.
- ``FATAL``: raised at once.

tenacity drives the loop: a fresh :class:`tenacity.AsyncRetrying` per call that needs one (its
statistics are per instance and would race if shared). The first attempt is made by the caller
outside tenacity, since most calls succeed at once; when it fails, the loop starts by replaying
that failure as its own first attempt, so every decision goes through the same rules.
Cancellation is never retried.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import tenacity

from . import _validate as check
from .errors import FailureClass, WachatError

logger = logging.getLogger("wachat_async")

T = TypeVar("T")


@attrs.frozen
class RetryPolicy:
    """How a client retries. Frozen; derive variants with :func:`attrs.evolve`."""

    #: Retries after the first attempt.
    max_retries: int = attrs.field(default=2, validator=check.attribute(check.non_negative_int))
    #: First backoff ceiling in seconds; doubles per retry (full jitter picks in [0, ceiling]).
    initial_backoff: float = attrs.field(default=0.5, validator=check.attribute(check.seconds))
    max_backoff: float = attrs.field(default=8.0, validator=check.attribute(check.seconds))
    #: No retry is started that would end after this many seconds since the call began.
    total_budget: float = attrs.field(default=120.0, validator=check.attribute(check.seconds))
    #: The longest ``Retry-After`` honoured; a server asking for more fails the call at once.
    max_retry_after: float = attrs.field(default=60.0, validator=check.attribute(check.seconds))

    def with_max_retries(self, max_retries: int | None) -> RetryPolicy:
        """This policy with ``max_retries`` retries (itself when None or unchanged)."""
        if max_retries is None or max_retries == self.max_retries:
            return self
        return attrs.evolve(self, max_retries=max_retries)

    def backoff(self, retry_number: int) -> float:
        """Full-jitter exponential backoff before retry number ``retry_number`` (1-based)."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (retry_number - 1))
        return random.uniform(0.0, ceiling)

    def allows(self, error: BaseException, resendable: bool) -> bool:
        """May the call be tried again after ``error``? ``resendable``: the call is idempotent,
        or reconciliation proved the failed attempt had no effect."""
        if not isinstance(error, WachatError):
            return False  # cancellation, programming errors
        failure = error.failure
        if failure is FailureClass.NOT_SENT:
            return True
        if failure is FailureClass.THROTTLED:
            retry_after: float | None = getattr(error, "retry_after", None)
            return retry_after is None or retry_after <= self.max_retry_after
        if failure is FailureClass.AMBIGUOUS:
            return resendable
        return False

    def delay_after(self, error: BaseException | None, attempts_made: int) -> float:
        """Seconds to wait after ``attempts_made`` attempts: what the server asked, else backoff."""
        retry_after: float | None = getattr(error, "retry_after", None)
        return retry_after if retry_after is not None else self.backoff(attempts_made)

    async def retry(
        self,
        operation: str,
        first_failure: WachatError,
        attempt: Callable[[int], Awaitable[T]],
        *,
        resendable: Callable[[], bool],
        started: float,
    ) -> T:
        """Attempts 2.. after ``first_failure``; ``attempt(n)`` makes attempt number ``n``.

        ``started`` is when the first attempt began (``time.monotonic()``), for the time budget.
        Returns the first success, or raises the last failure.
        """

        def may_retry(error: BaseException) -> bool:
            return self.allows(error, resendable())

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return self.delay_after(error, state.attempt_number)

        def log(state: tenacity.RetryCallState) -> None:
            if logger.isEnabledFor(logging.DEBUG):
                error = state.outcome.exception() if state.outcome else None
                failure = getattr(error, "failure", None)
                logger.debug(
                    "retrying %s: attempt %d failed (%s: %s); waiting %.2f s",
                    operation,
                    state.attempt_number,
                    failure.value if failure else "unknown",
                    error,
                    state.upcoming_sleep,
                )

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1)
            | tenacity.stop_before_delay(self.total_budget - (time.monotonic() - started)),
            wait=wait,
            retry=tenacity.retry_if_exception(may_retry),
            before_sleep=log,
            reraise=True,
        )
        replay: WachatError | None = first_failure
        async for trial in retrying:
            with trial:
                if replay is not None:
                    failure, replay = replay, None
                    raise failure
                return await attempt(trial.retry_state.attempt_number)
        raise AssertionError("unreachable: tenacity either returns or reraises")  # pragma: no cover
