"""The retry policy: what may be resent, when, and how often; and the one loop that applies it.

Each failure carries a :class:`~wachat_async.errors.FailureClass`:

- ``NOT_SENT`` (DNS, refused, connect timeout): any call is resent.
- ``THROTTLED`` (429, 503, 408): resent after ``Retry-After``; a server asking for more than
  ``max_retry_after`` fails the call at once.
- ``AMBIGUOUS`` (read timeout, reset after sending, 500/502/504): resent only when the call is
  idempotent, or when reconciliation proved that nothing happened.
- ``FATAL``: raised at once.

tenacity drives the retries: a fresh :class:`tenacity.AsyncRetrying` per call that needs one
(its statistics are per instance and would race if shared). The first attempt is made by the
caller, outside tenacity, since most calls succeed at once; the same attempt function then makes
attempts 2.. in tenacity's loop, and the same rules (:meth:`RetryPolicy.allows`, its waits and
its time budget) decide before each. Cancellation is never retried.
"""

from __future__ import annotations

import asyncio
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

    def allows(self, error: BaseException, idempotent: bool) -> bool:
        """May a call (``idempotent`` or not) be tried again after ``error``?"""
        if isinstance(error, ProvenUndone):
            return True  # it had no effect: as good as never sent
        if not isinstance(error, WachatError):
            return False  # cancellation, programming errors
        failure = error.failure
        if failure is FailureClass.NOT_SENT:
            return True
        if failure is FailureClass.THROTTLED:
            retry_after: float | None = getattr(error, "retry_after", None)
            return retry_after is None or retry_after <= self.max_retry_after
        if failure is FailureClass.AMBIGUOUS:
            return idempotent
        return False

    def delay_after(self, error: BaseException | None, attempts_made: int) -> float:
        """Seconds to wait after ``attempts_made`` attempts: what the server asked, else backoff."""
        retry_after: float | None = getattr(error, "retry_after", None)
        return retry_after if retry_after is not None else self.backoff(attempts_made)

    def _in_budget(self, started: float, wait: float) -> bool:
        """Whether an attempt after ``wait`` more seconds still starts within the time budget."""
        return time.monotonic() - started + wait < self.total_budget

    async def retry(
        self,
        operation: str,
        first_failure: BaseException,
        attempt: Callable[[int], Awaitable[T]],
        *,
        idempotent: bool,
        started: float,
        on_retry: Callable[[int, BaseException | None, float], Awaitable[None]] | None = None,
    ) -> T:
        """Attempts 2.. after the first one failed with ``first_failure``; ``attempt(n)`` makes
        attempt number ``n``. ``started`` is when the first attempt began (``time.monotonic()``).
        ``on_retry(n, failure, wait)`` (an observer's) hears each decision to retry after
        attempt ``n``, before the wait.

        Returns the first success, or raises the last failure (the one a
        :class:`ProvenUndone` carries, for an attempt reconciliation cleared).
        """

        def may_retry(error: BaseException) -> bool:
            return self.allows(error, idempotent)

        def log(number: int, error: BaseException | None, wait: float) -> None:
            if logger.isEnabledFor(logging.DEBUG):
                failure = getattr(_reported(error), "failure", None)
                logger.debug(
                    "retrying %s: attempt %d failed (%s: %s); waiting %.2f s",
                    operation,
                    number,
                    failure.value if failure else "unknown",
                    _reported(error),
                    wait,
                )

        # tenacity numbers its own attempts from 1: its attempt n is the call's attempt n + 1.
        def stop(state: tenacity.RetryCallState) -> bool:
            return state.attempt_number >= self.max_retries or not self._in_budget(
                started, state.upcoming_sleep
            )

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return self.delay_after(_reported(error), state.attempt_number + 1)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log(state.attempt_number + 1, error, state.upcoming_sleep)

        async def before_sleep_observed(state: tenacity.RetryCallState) -> None:
            before_sleep(state)
            assert on_retry is not None
            error = state.outcome.exception() if state.outcome else None
            await on_retry(state.attempt_number + 1, _reported(error), state.upcoming_sleep)

        first_wait = self.delay_after(_reported(first_failure), 1)
        try:
            if (
                self.max_retries == 0
                or not may_retry(first_failure)
                or not self._in_budget(started, first_wait)
            ):
                raise first_failure
            log(1, first_failure, first_wait)
            if on_retry is not None:
                await on_retry(1, _reported(first_failure), first_wait)
            await asyncio.sleep(first_wait)
            retrying = tenacity.AsyncRetrying(
                stop=stop,
                wait=wait,
                retry=tenacity.retry_if_exception(may_retry),
                before_sleep=before_sleep if on_retry is None else before_sleep_observed,
                reraise=True,
            )
            async for trial in retrying:
                with trial:
                    return await attempt(trial.retry_state.attempt_number + 1)
        except ProvenUndone as cleared:
            raise cleared.failure from None
        raise AssertionError("unreachable: tenacity either returns or reraises")  # pragma: no cover


class ProvenUndone(Exception):
    """Raised by an attempt that failed ambiguously but was proven to have had no effect
    (reconciliation found nothing): the call may be resent, even if not idempotent. ``failure``
    is what the call reports when it is not resent."""

    def __init__(self, failure: WachatError) -> None:
        super().__init__(str(failure))
        self.failure = failure


def _reported(error: BaseException | None) -> BaseException | None:
    return error.failure if isinstance(error, ProvenUndone) else error
