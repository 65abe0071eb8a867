"""The executor: runs one call to its end, through the transport, the typed errors and the
retry policy, asking the caller's reconciliation when a non-idempotent call's outcome is in
doubt.

Data flow: operation (a :class:`~wachat_async._request.Call`) -> :meth:`Executor.run` -> one
:class:`~wachat_async._request.Request` -> :meth:`_Run.attempt` (the transport sends it; the
status becomes a typed error in :mod:`~wachat_async._status`, or the body is decoded) -> result.
The first attempt is made at once; when it fails, the same attempt function makes the retries,
in the retry policy's loop. A failed attempt is examined: a 404 that proves a delete happened
is success; an ambiguous non-idempotent call is handed, as one :class:`Doubt`, to the caller's
:class:`Reconcile`, which finds its result, proves it did not happen (the call is then resent,
and the reconciliation told once the resend succeeded), or raises OutcomeUnknownError.
Without one, it ends as OutcomeUnknownError, never resent.

A call something observes (hooks, an OpenTelemetry provider: :mod:`~wachat_async._observe`)
has a :class:`~wachat_async._observe.Watch`, told here of each attempt sent and answered, each
retry decision and each reconciliation step; otherwise the only cost is a None check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Generic, Protocol, TypeVar

import attrs

from . import _otel
from . import _validate as check
from ._config import Settings, call_timeout
from ._decode import Undecodable
from ._observe import Observer, Watch
from ._reading import RawResponse
from ._request import Call, Request
from ._retry import ProvenUndone
from ._status import AnswerErrors
from ._transport import Transport
from .errors import (
    APIConnectionError,
    FailureClass,
    NotFoundError,
    OutcomeUnknownError,
    ResponseValidationError,
    WachatError,
)

T = TypeVar("T")


@attrs.frozen
class Doubt:
    """What reconciliation is asked about: a non-idempotent request whose attempt failed in a
    way that leaves its outcome unknown."""

    request: Request
    #: Why the outcome is unknown (a timeout, a reset, a 5xx, an unreadable 2xx).
    failure: WachatError
    #: Wall-clock time (``time.time()``) the call's first attempt began.
    started: float
    #: The server answered 2xx, with a body that could not be read: it did process it.
    processed: bool


@attrs.frozen
class Found(Generic[T]):
    """Reconciliation's answer when the doubtful call did take effect: its result."""

    value: T


class NotDone:
    """Reconciliation's answer when the doubtful call did not take effect: safe to resend."""

    def __repr__(self) -> str:
        return "NOT_DONE"


NOT_DONE = NotDone()


class Reconcile(Protocol[T]):
    """The caller's reconciliation of a non-idempotent call, asked about one :class:`Doubt`."""

    async def settle(self, doubt: Doubt) -> Found[T] | NotDone:
        """Found(result) when the doubtful attempt took effect, NOT_DONE when it did not (the
        call is then resent); raises OutcomeUnknownError when nobody can tell."""
        ...

    async def resent(self, doubt: Doubt, result: T) -> T:
        """The call's result, once it succeeded after ``doubt`` was settled NOT_DONE and it was
        resent (a lost attempt may still land late: the place to look for it)."""
        ...


class Executor:
    """Runs calls for one client: attempts, typed errors, retries, reconciliation."""

    def __init__(self, transport: Transport, settings: Settings) -> None:
        self.transport = transport
        self.settings = settings
        self.redact = transport.redact
        self.errors = AnswerErrors(settings, transport.redact)
        self._timeout = settings.timeout
        self._policy = settings.retry
        self._observer = _observer(transport, settings)

    def run(
        self,
        call: Call,
        decode: Callable[[RawResponse], T],
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        reconcile: Reconcile[T] | None = None,
        done_if_gone: Callable[[], T] | None = None,
    ) -> Coroutine[Any, Any, T]:
        """Run ``call`` with its query ``params`` and JSON ``body``; decode its success answer.

        A non-idempotent call that fails ambiguously (or whose 2xx cannot be read) goes to
        ``reconcile``; without one it raises OutcomeUnknownError and is never resent.
        ``done_if_gone`` turns a 404 after an attempt that may have landed into success (a
        delete: the earlier attempt did it). Returns the first attempt's coroutine (one frame
        less on every call: the retries start from inside it when it fails).
        """
        seconds = self._timeout if timeout is None else call_timeout(timeout, self._timeout)
        if max_retries is not None:
            check.non_negative_int("max_retries", max_retries)
        request = Request(call, params, body, seconds)
        run = _Run(self, request, decode, reconcile, done_if_gone, max_retries)
        if self._observer is None or (watch := self._observer.watch(request)) is None:
            return run.attempt(1)
        run.watch = watch
        return watch.run(run.attempt(1))


def _observer(transport: Transport, settings: Settings) -> Observer | None:
    """What observes a client's calls: None without hooks or OpenTelemetry (nothing to do)."""
    telemetry = _otel.telemetry()
    if settings.hooks is None and telemetry is None:
        return None
    base = transport.url("")

    def url(request: Request) -> str:
        url = transport.url(request.call.path)
        return str(url.with_query(request.query) if request.query else url)

    return Observer(
        settings.hooks,
        telemetry,
        transport.redact,
        url,
        transport.identity,
        (base.host or "", base.port or 0),
    )


class _Run(Generic[T]):
    """One call: its request, how its answer is read, and what its attempts taught."""

    __slots__ = (
        "cleared",
        "decode",
        "done_if_gone",
        "executor",
        "landed",
        "max_retries",
        "reconcile",
        "request",
        "started",
        "watch",
    )

    def __init__(
        self,
        executor: Executor,
        request: Request,
        decode: Callable[[RawResponse], T],
        reconcile: Reconcile[T] | None,
        done_if_gone: Callable[[], T] | None,
        max_retries: int | None,
    ) -> None:
        self.executor = executor
        self.request = request
        self.decode = decode
        self.reconcile = reconcile
        self.done_if_gone = done_if_gone
        self.max_retries = max_retries
        #: ``time.monotonic()`` when the first attempt began.
        self.started = time.monotonic()
        #: An earlier attempt may have taken effect (so a delete's 404 means it did).
        self.landed = False
        #: The first doubt reconciliation settled as not done (the call was then resent).
        self.cleared: Doubt | None = None
        #: What observes this call (hooks, a span), if anything does.
        self.watch: Watch[T] | None = None

    async def attempt(self, number: int) -> T:
        """Attempt ``number``: its result, or raises its failure (examined). The first one's
        failure starts the retries, which call this again for attempts 2.."""
        executor = self.executor
        watch = self.watch
        resent = False
        if watch is not None:
            await watch.request_sent(number)
        try:
            raw = await executor.transport.send(self.request, number, self.started)
        except APIConnectionError as error:
            failure: WachatError = error
            if watch is not None:
                await watch.response(number, None, error)
        else:
            if watch is not None:
                await watch.response(number, raw.status, None)
            if 200 <= raw.status < 300 and raw.readable:
                try:
                    return self.decode(raw)
                except Undecodable as problem:
                    failure = executor.errors.undecodable(raw, problem, number)
            else:
                failure = executor.errors.for_status(self.request, raw, number)
                resent = raw.resent
        if number > 1:
            return await self._examine(failure, resent)
        return await self._retried(failure, resent)

    async def _retried(self, first: WachatError, resent: bool) -> T:
        """The call's end after its first attempt failed with ``first``."""
        try:
            return await self._examine(first, resent)
        except (WachatError, ProvenUndone) as failure:
            examined: BaseException = failure
        policy = self.executor._policy.with_max_retries(self.max_retries)
        call = self.request.call
        watch = self.watch
        value = await policy.retry(
            call.operation,
            examined,
            self.attempt,
            idempotent=call.idempotent,
            started=self.started,
            on_retry=None if watch is None else watch.retrying,
        )
        if self.cleared is not None and self.reconcile is not None:
            value = await self.reconcile.resent(self.cleared, value)
            if watch is not None:
                await watch.reconciled("resent", "checked")
        return value

    async def _examine(self, failure: WachatError, resent: bool) -> T:
        """A result when the failure turns out to be none; otherwise raises it, or what it
        turned into: OutcomeUnknownError, or ProvenUndone when reconciliation cleared it."""
        call = self.request.call
        gone = isinstance(failure, NotFoundError) and (self.landed or resent)
        if gone and self.done_if_gone is not None:
            return self.done_if_gone()
        processed = isinstance(failure, ResponseValidationError)
        ambiguous = processed or failure.failure is FailureClass.AMBIGUOUS
        self.landed = self.landed or ambiguous
        if not ambiguous or call.idempotent:
            raise failure
        if self.reconcile is None:
            raise OutcomeUnknownError(
                f"{call.operation} may or may not have taken effect ({failure}); it was not "
                "resent, because that could duplicate it.",
                request=call,
                cause=failure,
                attempts=failure.attempts,
            )
        wall_started = time.time() - (time.monotonic() - self.started)
        doubt = Doubt(self.request, failure, wall_started, processed)
        watch = self.watch
        try:
            verdict = await self.reconcile.settle(doubt)
        except OutcomeUnknownError:
            if watch is not None:
                await watch.reconciled("settle", "unknown")
            raise
        if watch is not None:
            await watch.reconciled("settle", "found" if isinstance(verdict, Found) else "not_done")
        if isinstance(verdict, Found):
            return verdict.value
        if self.cleared is None:
            self.cleared = doubt
        raise ProvenUndone(failure)
