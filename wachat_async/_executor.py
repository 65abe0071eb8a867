"""The executor: runs one call to its end, through the transport, the retry policy and, when a
create's outcome is ambiguous, the reconciler.

Data flow: operation (a :class:`~wachat_async._transport.Call`) -> :meth:`Executor.run` ->
transport (one attempt) -> status mapped to a typed error here, or the body decoded -> result.
On failure, :class:`_Recovery` decides: a 404 that proves a delete happened is success; an
ambiguous non-idempotent call asks its reconciler whether it took effect (or, with none, ends
as OutcomeUnknownError); whatever the reconciler says decides whether the policy may resend it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from . import _json
from . import _validate as check
from ._config import Settings, call_timeout
from ._decode import Undecodable
from ._retry import RetryPolicy
from ._transport import Call, RawResponse, Transport
from .errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FailureClass,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    ResponseTooLargeError,
    ResponseValidationError,
    ServerError,
    UpstreamError,
    WachatError,
)

T = TypeVar("T")

_ERROR_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
    502: UpstreamError,
}
_THROTTLED = frozenset({408, 429, 503})
#: What a status means for one operation, said in the error.
_OPERATION_HINTS = {
    ("instances.delete", 409): (
        "The instance is still connected; log it out first (the logout path is not "
        "published: see AsyncWachat.request)"
    ),
}
#: How much of a server's text an error keeps (after the key is removed).
_MESSAGE_CHARS = 300
_BODY_CHARS = 8192
_TEXTUAL = ("application/json", "text/", "application/problem+json", "application/xml")


@attrs.frozen
class Found(Generic[T]):
    """The reconciler's answer when the ambiguous call did take effect: its result."""

    value: T


class NotDone:
    """The reconciler's answer when the ambiguous call did not take effect: safe to resend."""

    def __repr__(self) -> str:
        return "NOT_DONE"


NOT_DONE = NotDone()

#: Asked when a non-idempotent call failed ambiguously: ``(call, body, failure, started,
#: processed)``, where ``started`` is the wall-clock time the first attempt began and
#: ``processed`` is True when the server answered 2xx with a body that could not be read.
#: Returns Found(result) or NOT_DONE, or raises OutcomeUnknownError.
Reconcile = Callable[[Call, Any, WachatError, float, bool], Awaitable["Found[T] | NotDone"]]


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:
        return seconds if seconds >= 0 and seconds == seconds else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def _server_words(body: bytes) -> tuple[str, bool]:
    """The server's own message (JSON ``error``, ``message``, ``details``, else the text), and
    whether the body is the API's JSON error shape at all."""
    try:
        data = _json.loads(body)
    except (ValueError, TypeError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict):
        for key in ("error", "message", "details"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip(), True
            if value not in (None, "", [], {}):
                return _json.dumps(value).decode(), True
        if "success" in data:
            return "(no message)", True
    text = body.decode("utf-8", "replace").strip()
    return text or "(empty body)", False


class Executor:
    """Runs calls for one client: first attempt, typed errors, retries, reconciliation."""

    def __init__(self, transport: Transport, settings: Settings) -> None:
        self.transport = transport
        self.settings = settings
        self.redact = transport.redact
        self._timeout = settings.timeout
        self._policy = settings.retry

    async def run(
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
    ) -> T:
        """Run ``call`` with its query ``params`` and JSON ``body``; decode its success answer.

        A non-idempotent call that fails ambiguously (or whose 2xx cannot be read) goes to
        ``reconcile``; without one it raises OutcomeUnknownError and is never resent.
        ``done_if_gone`` turns a 404 after an attempt that may have landed into success (a
        delete: the earlier attempt did it).
        """
        seconds = self._timeout if timeout is None else call_timeout(timeout, self._timeout)
        if max_retries is not None:
            check.non_negative_int("max_retries", max_retries)
        started = time.monotonic()
        resent = False
        try:
            raw = await self.transport.send(call, params, body, seconds, 1, started)
        except APIConnectionError as error:
            failure: WachatError = error
        else:
            if 200 <= raw.status < 300 and raw.readable:
                try:
                    return decode(raw)
                except Undecodable as problem:
                    failure = self.undecodable(raw, problem, 1)
            else:
                failure = self.status_error(call, params, body, raw, 1)
                resent = raw.resent
        recovery = _Recovery(
            self, call, params, body, decode, seconds, started, reconcile, done_if_gone
        )
        policy = self._policy.with_max_retries(max_retries)
        return await recovery.after_first(failure, resent, policy)

    # -- what an answer means ----------------------------------------------------------------

    def status_error(
        self,
        call: Call,
        params: Mapping[str, str] | None,
        body: Any,
        raw: RawResponse,
        attempt: int,
    ) -> WachatError:
        """The typed error for a non-2xx answer (or a 2xx larger than the client reads)."""
        status = raw.status
        redact = self.redact
        if 200 <= status < 300:  # a success that cannot be read: too large, or encoded oddly
            if raw.unreadable is not None:
                return ResponseValidationError(
                    f"Unexpected response from Wachat: {redact(raw.unreadable)}",
                    field=None,
                    body=self._quote(raw),
                    status_code=status,
                    attempts=attempt,
                )
            option, limit = raw.cap or ("max_response_bytes", self.settings.max_response_bytes)
            return ResponseTooLargeError(
                f"The answer is larger than {option} ({limit} bytes), so reading stopped "
                f"there; raise {option} if such answers are legitimate",
                limit=limit,
                field=None,
                body=self._quote(raw),
                status_code=status,
                attempts=attempt,
            )
        words, from_api = _server_words(raw.body)
        message = redact.snippet(words, _MESSAGE_CHARS)
        headers = {redact(k): redact(v) for k, v in raw.headers.items()}
        common: dict[str, Any] = {
            "method": call.method,
            "path": call.path,
            "headers": headers,
            "attempts": attempt,
        }
        if 300 <= status < 400:
            location = raw.headers.get("Location")
            where = redact(location) if location else None
            return RedirectError(
                status,
                f"Wachat answered with a redirect to {where or 'nowhere'}; not followed "
                "(an API client never resends a request, or its key, elsewhere). Check base_url",
                self._quote(raw),
                location=where,
                **common,
            )
        cls = _ERROR_BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
        if status in _THROTTLED:
            failure = FailureClass.THROTTLED
        elif status >= 500:
            failure = FailureClass.AMBIGUOUS
        else:
            failure = FailureClass.FATAL
        retry_after = parse_retry_after(raw.headers)
        return cls(
            status,
            message,
            self._quote(raw),
            retry_after=retry_after,
            failure=failure,
            hint=self._hint(call, params, body, status, from_api, retry_after),
            **common,
        )

    def _hint(
        self,
        call: Call,
        params: Mapping[str, str] | None,
        body: Any,
        status: int,
        from_api: bool,
        retry_after: float | None,
    ) -> str | None:
        """What usually causes this answer, for the errors people meet first."""
        if (call.operation, status) in _OPERATION_HINTS:
            return _OPERATION_HINTS[call.operation, status]
        if status == 404 and not from_api:
            return (
                "That answer is not Wachat's: check base_url (it should end in /api/v1; "
                f"it is {self.settings.base_url})"
            )
        names_instance = bool(params and "instanceName" in params) or (
            isinstance(body, dict) and "instanceName" in body and call.path != "/instance/create"
        )
        if status == 404 and names_instance:
            return (
                "Every call after create takes the API instance name "
                "(created.instance.api_instance_name, like t1_abc123_jakarta_store), not the "
                "friendly name; instances.list() shows both"
            )
        if status in _THROTTLED and retry_after is not None:
            limit = self._policy.max_retry_after
            if retry_after > limit:
                return (
                    f"The server asked to wait {retry_after:g} s, more than max_retry_after "
                    f"({limit:g} s), so the call was not retried"
                )
            return f"The server asked to wait {retry_after:g} s"
        return None

    def undecodable(self, raw: RawResponse, problem: Undecodable, attempt: int) -> WachatError:
        return ResponseValidationError(
            self.redact(problem.message),
            # A path may run through member names the server chose (the QR answer is searched
            # under any of them), so it is server text like any other.
            field=None if problem.field is None else self.redact(problem.field),
            body=self._quote(raw),
            status_code=raw.status,
            attempts=attempt,
        )

    def _quote(self, raw: RawResponse) -> str:
        """The start of a body as text, the key removed first; binary bodies are described."""
        content_type = raw.content_type
        if (
            content_type
            and not content_type.startswith(_TEXTUAL)
            and not content_type.endswith("+json")
        ):
            return f"<{len(raw.body)} bytes of {self.redact(content_type)}>"
        return self.redact.snippet(
            raw.body[: _BODY_CHARS * 4].decode("utf-8", "replace"), _BODY_CHARS
        )


class _Recovery(Generic[T]):
    """One call's life after its first attempt failed: what was learnt, and the next attempts."""

    def __init__(
        self,
        executor: Executor,
        call: Call,
        params: Mapping[str, str] | None,
        body: Any,
        decode: Callable[[RawResponse], T],
        timeout: float,
        started: float,
        reconcile: Reconcile[T] | None,
        done_if_gone: Callable[[], T] | None,
    ) -> None:
        self.executor = executor
        self.call = call
        self.params = params
        self.body = body
        self.decode = decode
        self.timeout = timeout
        self.started = started
        self.reconcile = reconcile
        self.done_if_gone = done_if_gone
        #: Resending cannot duplicate anything: the call is idempotent, or the reconciler said
        #: the last attempt did not take effect.
        self.resendable = call.idempotent
        #: An earlier attempt may have taken effect.
        self.maybe_done = False

    async def after_first(self, failure: WachatError, resent: bool, policy: RetryPolicy) -> T:
        try:
            return await self.examine(failure, resent)
        except WachatError as examined:
            first = examined
        if policy.max_retries == 0 or not policy.allows(first, self.resendable):
            raise first
        return await policy.retry(
            self.call.operation,
            first,
            self.attempt,
            resendable=lambda: self.resendable,
            started=self.started,
        )

    async def attempt(self, number: int) -> T:
        executor = self.executor
        resent = False
        call, params, body = self.call, self.params, self.body
        try:
            raw = await executor.transport.send(
                call, params, body, self.timeout, number, self.started
            )
        except APIConnectionError as error:
            failure: WachatError = error
        else:
            if 200 <= raw.status < 300 and raw.readable:
                try:
                    return self.decode(raw)
                except Undecodable as problem:
                    failure = executor.undecodable(raw, problem, number)
            else:
                failure = executor.status_error(call, params, body, raw, number)
                resent = raw.resent
        return await self.examine(failure, resent)

    async def examine(self, failure: WachatError, resent: bool) -> T:
        """Return a result when the failure turns out to be none; otherwise raise it (or what
        it turned into), having learnt whether the call may be resent."""
        call = self.call
        gone = isinstance(failure, NotFoundError) and (self.maybe_done or resent)
        if gone and self.done_if_gone is not None:
            return self.done_if_gone()
        processed = isinstance(failure, ResponseValidationError)
        ambiguous = processed or failure.failure is FailureClass.AMBIGUOUS
        self.maybe_done = self.maybe_done or ambiguous
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
        verdict = await self.reconcile(call, self.body, failure, wall_started, processed)
        if isinstance(verdict, Found):
            return verdict.value
        self.resendable = True  # nothing happened: the policy may resend it
        raise failure
