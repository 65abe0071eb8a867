"""Watching calls: the one place that observes each attempt, retry decision and
reconciliation step, for the caller's hooks (:class:`Hooks`) and for OpenTelemetry spans and
metrics (:mod:`~wachat_async._otel`).

The executor asks its :class:`Observer` for a :class:`Watch` per call; there is none (and no
cost beyond a None check) when the client has no hooks and no tracer or meter provider is
configured.
Everything a watch hands out is redacted first: hooks see the URL and headers as the
library's errors would show them, and spans carry the API's path template, never a query
(``apiKey`` travels in the QR image and live URLs), nor any header or body.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlencode

import attrs

from ._request import Request
from ._security import Redactor
from .errors import HookError, InvalidRequestError, WachatError

T = TypeVar("T")
E = TypeVar("E")

#: A hook: a plain or async callable taking the event.
Hook = Callable[[E], Awaitable[None] | None]

#: What stands for a secret in what hooks see.
HIDDEN = "***"
_REMEMBERED_URLS = 1024


@attrs.frozen
class RequestEvent:
    """An attempt about to be sent."""

    #: The operation, e.g. ``instances.create`` (``request GET /path`` for ``wa.request``).
    operation: str
    method: str
    #: The API path, e.g. ``/instance/create``.
    url_template: str
    #: The full URL with its query, ``apiKey`` values and any secret replaced by ``***``.
    url: str
    #: The headers sent, ``Authorization`` as ``Bearer ***``.
    headers: Mapping[str, str]
    #: 1 for the first attempt, 2 for the first retry, ...
    attempt: int


@attrs.frozen
class ResponseEvent:
    """An attempt's end: the status that came back, or none."""

    operation: str
    method: str
    url_template: str
    url: str
    attempt: int
    #: The HTTP status; None when no answer arrived (``error`` says why).
    status: int | None
    #: Seconds from sending to the whole answer read (or the network failure).
    elapsed: float
    #: The network failure's class name (``APITimeoutError``...), when no answer arrived.
    error: str | None


@attrs.frozen
class RetryEvent:
    """The retry policy's decision to try again after a failed attempt."""

    operation: str
    #: The attempt that failed; attempt ``attempt + 1`` follows after ``wait``.
    attempt: int
    #: ``not_sent``, ``throttled`` or ``ambiguous`` (see :class:`~wachat_async.FailureClass`).
    failure: str
    #: The failure's class name, e.g. ``ServerError``.
    error: str
    #: Seconds waited before the next attempt.
    wait: float


@attrs.frozen
class ReconcileEvent:
    """A step of reconciling a call whose outcome was in doubt (see the README)."""

    operation: str
    #: ``settle`` (did the doubtful attempt take effect?) or ``resent`` (after the call was
    #: resent: looking for a late duplicate).
    step: str
    #: For ``settle``: ``found``, ``not_done`` (it will be resent) or ``unknown``; for
    #: ``resent``: ``checked``.
    outcome: str


def _hooks(value: Any) -> tuple[Callable[..., Any], ...]:
    hooks = (value,) if callable(value) else tuple(value)
    for hook in hooks:
        if not callable(hook):
            raise InvalidRequestError(f"a hook must be callable, got {type(hook).__name__}")
    return hooks


@attrs.frozen
class Hooks:
    """Callables that see every attempt of every call, in the order given (each field takes one
    callable or a sequence): each takes one event and may be async. A hook that raises fails
    the call with :class:`~wachat_async.HookError` (the hook's exception as its
    ``__cause__``); the call is not resent for it.

    ::

        AsyncWachat(hooks=Hooks(on_response=lambda e: print(e.operation, e.status, e.elapsed)))
    """

    #: Before each attempt is sent: :class:`RequestEvent`.
    on_request: Iterable[Hook[RequestEvent]] | Hook[RequestEvent] = attrs.field(
        default=(), converter=_hooks
    )
    #: After each attempt, answered or not: :class:`ResponseEvent`.
    on_response: Iterable[Hook[ResponseEvent]] | Hook[ResponseEvent] = attrs.field(
        default=(), converter=_hooks
    )
    #: Before each retry's wait: :class:`RetryEvent`.
    on_retry: Iterable[Hook[RetryEvent]] | Hook[RetryEvent] = attrs.field(
        default=(), converter=_hooks
    )
    #: After each reconciliation step: :class:`ReconcileEvent`.
    on_reconcile: Iterable[Hook[ReconcileEvent]] | Hook[ReconcileEvent] = attrs.field(
        default=(), converter=_hooks
    )

    def __bool__(self) -> bool:
        return bool(self.on_request or self.on_response or self.on_retry or self.on_reconcile)


async def _run_hooks(kind: str, hooks: Any, event: object, watch: Watch[Any]) -> None:
    for hook in hooks:
        try:
            outcome = hook(event)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            name = getattr(hook, "__qualname__", None) or type(hook).__name__
            said = watch.observer.redact(f"{type(exc).__name__}: {exc}")
            raise HookError(
                f"{watch.request.call.operation}: the {kind} hook {name} raised {said}",
                hook=kind,
                name=name,
                attempts=watch.attempts,
            ) from exc


def hidden_query_values(url: str, redact: Redactor) -> str:
    """``url`` redacted, every ``apiKey`` query value (anyone's key) replaced by ``***``."""
    base, mark, query = url.partition("?")
    if mark:
        pairs = [
            (k, HIDDEN if k.lower() == "apikey" else v)
            for k, v in parse_qsl(query, keep_blank_values=True)
        ]
        url = f"{base}?{urlencode(pairs, safe='*')}"
    return redact(url)


class Observer:
    """What one client observes: its hooks, and OpenTelemetry when it is installed."""

    def __init__(
        self,
        hooks: Hooks | None,
        telemetry: Any,
        redact: Redactor,
        url: Callable[[Request], str],
        headers: Mapping[str, str],
        server: tuple[str, int],
    ) -> None:
        self.hooks = hooks if hooks else None
        self.telemetry = telemetry
        self.redact = redact
        self.url = url
        #: The headers every request carries, redacted; each adds its Accept (and type).
        self._headers = {k: redact(v) for k, v in headers.items()}
        self._headers["Authorization"] = f"Bearer {HIDDEN}"
        self.server = server
        self._urls: dict[tuple[Any, ...], str] = {}

    def shown_url(self, request: Request) -> str:
        """``request``'s URL as hooks see it, remembered (redacting costs more than a call's
        parsing, and the same instance is asked about again and again)."""
        key = (request.call.path, *(request.query or {}).items())
        shown = self._urls.get(key)
        if shown is None:
            if len(self._urls) >= _REMEMBERED_URLS:
                self._urls.clear()
            shown = self._urls[key] = hidden_query_values(self.url(request), self.redact)
        return shown

    def headers(self, request: Request) -> Mapping[str, str]:
        """The headers ``request`` is sent with, redacted."""
        headers = {**self._headers, "Accept": request.call.accept}
        if request.body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def watch(self, request: Request) -> Watch[Any] | None:
        """A watch over one call of ``request``; None when nothing would see it."""
        telemetry = self.telemetry
        tracer = metrics = None
        if telemetry is not None:
            tracer = telemetry.tracer()
            metrics = telemetry.instruments()
        if tracer is None and metrics is None and self.hooks is None:
            return None
        return Watch[Any](self, request, tracer, metrics)


def _span_name(operation: str) -> str:
    # wa.request's operations are named after their path: one name for all keeps names few.
    return "wachat.request" if " " in operation else f"wachat.{operation}"


def _instance(request: Request) -> str | None:
    """The instance's API name, where the request names one (a create names the friendly one)."""
    name = request.query.get("instanceName") if request.query else None
    if name is None and isinstance(request.body, dict) and request.call.path != "/instance/create":
        name = request.body.get("instanceName")
    return name if isinstance(name, str) else None


class Watch(Generic[T]):
    """One call observed: its span (when traced), and the hooks' events."""

    __slots__ = (
        "attempts",
        "hooks",
        "metrics",
        "observer",
        "request",
        "sent",
        "span",
        "status",
        "url",
    )

    def __init__(self, observer: Observer, request: Request, tracer: Any, metrics: Any) -> None:
        self.observer = observer
        self.request = request
        self.hooks = observer.hooks
        #: The instruments (an ``_otel.Instruments``) when metrics are recorded.
        self.metrics = metrics
        self.attempts = 0
        self.status: int | None = None
        self.sent = 0.0
        self.url: str | None = None
        self.span: Any = None
        if tracer is not None:
            call = request.call
            host, port = observer.server
            attributes: dict[str, Any] = {
                "http.request.method": call.method,
                "url.template": call.path,
                "server.address": host,
                "server.port": port,
            }
            if (instance := _instance(request)) is not None:
                attributes["wachat.instance"] = instance
            kind = observer.telemetry.trace.SpanKind.CLIENT
            name = _span_name(call.operation)
            self.span = tracer.start_span(name, kind=kind, attributes=attributes)

    async def run(self, first: Coroutine[Any, Any, T]) -> T:
        """The call's result (``first`` is its first attempt), with its span current."""
        try:
            with self._current():
                result = await first
        except BaseException as error:
            self._end(error)
            raise
        self._end(None, result)
        return result

    def _current(self) -> AbstractContextManager[Any]:
        if self.span is None:
            return nullcontext()
        return self.observer.telemetry.trace.use_span(  # type: ignore[no-any-return]
            self.span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        )

    def _full_url(self) -> str:
        if self.url is None:
            self.url = self.observer.shown_url(self.request)
        return self.url

    async def request_sent(self, attempt: int) -> None:
        self.attempts = attempt
        self.sent = time.perf_counter()
        if self.hooks is not None and self.hooks.on_request:
            call = self.request.call
            event = RequestEvent(
                call.operation,
                call.method,
                call.path,
                self._full_url(),
                self.observer.headers(self.request),
                attempt,
            )
            await _run_hooks("on_request", self.hooks.on_request, event, self)

    async def response(self, attempt: int, status: int | None, error: BaseException | None) -> None:
        self.status = status
        elapsed = time.perf_counter() - self.sent
        if self.metrics is not None:
            self._measure(status, error, elapsed)
        if self.hooks is not None and self.hooks.on_response:
            call = self.request.call
            event = ResponseEvent(
                call.operation,
                call.method,
                call.path,
                self._full_url(),
                attempt,
                status,
                elapsed,
                None if error is None else type(error).__name__,
            )
            await _run_hooks("on_response", self.hooks.on_response, event, self)

    def _labels(self) -> dict[str, Any]:
        call = self.request.call
        return {"wachat.operation": _span_name(call.operation)[len("wachat.") :]}

    def _measure(self, status: int | None, error: BaseException | None, elapsed: float) -> None:
        call = self.request.call
        host, port = self.observer.server
        labels = self._labels()
        self.metrics.attempts.add(1, labels)
        labels |= {
            "http.request.method": call.method,
            "url.template": call.path,
            "server.address": host,
            "server.port": port,
        }
        if status is not None:
            labels["http.response.status_code"] = status
        if error is not None:
            labels["error.type"] = type(error).__name__
        elif status is not None and status >= 400:
            labels["error.type"] = str(status)  # the HTTP conventions' choice
        self.metrics.duration.record(elapsed, labels)

    async def retrying(self, attempt: int, error: BaseException | None, wait: float) -> None:
        failure = getattr(error, "failure", None)
        kind = failure.value if failure is not None else "unknown"
        name = type(error).__name__
        if self.metrics is not None:
            self.metrics.retries.add(1, self._labels() | {"wachat.retry.failure_class": kind})
        if self.span is not None:
            self.span.add_event(
                "retry",
                {
                    "wachat.retry.after_attempt": attempt,
                    "wachat.retry.failure_class": kind,
                    "wachat.retry.wait_seconds": wait,
                    "error.type": name,
                },
            )
        if self.hooks is not None and self.hooks.on_retry:
            event = RetryEvent(self.request.call.operation, attempt, kind, name, wait)
            await _run_hooks("on_retry", self.hooks.on_retry, event, self)

    async def reconciled(self, step: str, outcome: str) -> None:
        if self.metrics is not None:
            labels = {"wachat.reconcile.step": step, "wachat.reconcile.outcome": outcome}
            self.metrics.reconciliations.add(1, self._labels() | labels)
        if self.span is not None:
            self.span.add_event(
                "reconcile", {"wachat.reconcile.step": step, "wachat.reconcile.outcome": outcome}
            )
        if self.hooks is not None and self.hooks.on_reconcile:
            event = ReconcileEvent(self.request.call.operation, step, outcome)
            await _run_hooks("on_reconcile", self.hooks.on_reconcile, event, self)

    def _end(self, error: BaseException | None, result: object = None) -> None:
        span = self.span
        if span is None:
            return
        span.set_attribute("wachat.attempts", self.attempts)
        if self.status is not None:
            span.set_attribute("http.response.status_code", self.status)
        if error is None:
            if self.request.call.path == "/instance/create":
                name = getattr(getattr(result, "instance", None), "api_instance_name", None)
                if isinstance(name, str):
                    span.set_attribute("wachat.instance", name)
        else:
            trace = self.observer.telemetry.trace
            kind = type(error).__name__
            # The library's own error texts are redacted; anything else is redacted here. No
            # traceback is recorded: the text is all a span carries of the failure.
            text = self.observer.redact(str(error)) if isinstance(error, WachatError) else kind
            span.set_attribute("error.type", kind)
            span.add_event("exception", {"exception.type": kind, "exception.message": text})
            span.set_status(trace.Status(trace.StatusCode.ERROR, text))
        span.end()
