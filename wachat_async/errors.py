"""Every exception the library raises. Each is a :class:`WachatError`.

::

    WachatError
    ├── InvalidRequestError (also ValueError)   bad input, caught before anything is sent
    ├── APIError                                 the server answered with an error status
    │   ├── RedirectError            3xx: an API client follows no redirect (``location``)
    │   ├── BadRequestError          400
    │   ├── AuthenticationError      401
    │   ├── PermissionDeniedError    403
    │   ├── NotFoundError            404
    │   ├── ConflictError            409
    │   ├── RateLimitError           429 (``retry_after``)
    │   └── ServerError              5xx
    │       └── UpstreamError        502
    ├── APIConnectionError                       no usable response arrived
    │   └── APITimeoutError (also TimeoutError)
    ├── ResponseValidationError                  a success response that does not decode
    │   └── ResponseTooLargeError                ... or is larger than the client reads
    ├── OutcomeUnknownError                      a create or send may or may not have happened
    │   └── UnreadableOutcomeError (also ResponseValidationError)
    ├── WaitTimeoutError (also TimeoutError)     ``wait_until_connected`` gave up
    ├── MessageFailedError                       ``wait_for_status``: a receipt said failed
    ├── HookError                                one of the client's hooks raised
    ├── WebhookSignatureError                    an incoming delivery failed verification
    ├── WebhookPayloadError (also ValueError)    an incoming delivery that is not a JSON object
    └── JournalError                             a bulk journal that cannot be used
        ├── JournalInUseError                    another process has it open
        └── JournalMismatchError                 it belongs to another account or base URL

Every error carries ``attempts``: how many requests were made for the call that failed. Fields
are set once, when the error is built, and every error survives ``pickle`` and ``copy`` with its
type and fields (for Celery, multiprocessing and ``concurrent.futures``). Text that came from a
server has the API key removed before it is stored.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "FailureClass",
    "HookError",
    "InvalidRequestError",
    "JournalError",
    "JournalInUseError",
    "JournalMismatchError",
    "MessageFailedError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedirectError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "ServerError",
    "UnreadableOutcomeError",
    "UpstreamError",
    "WachatError",
    "WaitTimeoutError",
    "WebhookPayloadError",
    "WebhookSignatureError",
]


class FailureClass(enum.Enum):
    """How a failed attempt may be retried (see :class:`~wachat_async.RetryPolicy`)."""

    #: The request never left the client (DNS, refused, connect timeout): any call may be resent.
    NOT_SENT = "not_sent"
    #: The server refused to process it for now (429, 503, 408): resend after the asked wait.
    THROTTLED = "throttled"
    #: It may have been processed (read timeout, reset, 500/502/504): resend only idempotent calls.
    AMBIGUOUS = "ambiguous"
    #: Resending cannot help (other 4xx, 3xx, TLS errors, a 2xx that does not decode).
    FATAL = "fatal"


def _restore(cls: type[WachatError], args: tuple[Any, ...], fields: dict[str, Any]) -> WachatError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(fields)
    return error


class WachatError(Exception):
    """Base class of every error raised by wachat_async."""

    #: Requests made for the call that failed (1 when it was not retried).
    attempts: int = 1
    #: Retry class of the failure; None for errors that never reached the network.
    failure: FailureClass | None = None

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its fields rather than by calling __init__ again with ``args``, which
        # keyword-only fields would not survive.
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class InvalidRequestError(WachatError, ValueError):
    """Bad input, detected before anything was sent. The message names your parameter."""


class APIError(WachatError):
    """The server answered with an error status.

    ``message`` is the server's own words; ``hint`` (when set) says what usually causes it,
    and ``hint_code`` names that hint with a stable code (``"sandbox_key"``, ``"logout_first"``,
    ...: see ``wachat_async._status``), for interfaces that phrase it themselves.
    """

    failure: FailureClass | None = FailureClass.FATAL

    def __init__(
        self,
        status_code: int,
        message: str,
        body: str = "",
        *,
        method: str = "",
        path: str = "",
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        failure: FailureClass | None = None,
        hint: str | None = None,
        hint_code: str | None = None,
        attempts: int = 1,
    ) -> None:
        self.status_code = status_code
        self.message = message
        #: The response body as text (the API key removed, should the server echo it).
        self.body = body
        self.method = method
        self.path = path
        self.headers: Mapping[str, str] = dict(headers or {})
        #: Seconds the server asked to wait before trying again (``Retry-After``), if it said.
        self.retry_after = retry_after
        self.hint = hint
        self.hint_code = hint_code
        if failure is not None:
            self.failure = failure
        super().__init__(self._describe(), attempts=attempts)

    def _describe(self) -> str:
        text = f"{self.status_code} {self.message}"
        if self.method:
            text += f" ({self.method} {self.path})"
        if self.hint:
            text += f". {self.hint}"
        return text

    def __str__(self) -> str:
        return self._describe()


class RedirectError(APIError):
    """3xx: the server pointed elsewhere. The client never follows a redirect (it would resend
    the body, and the key, to wherever it points); ``location`` says where, redacted."""

    def __init__(
        self, status_code: int, message: str, body: str = "", *, location: str | None, **kwargs: Any
    ) -> None:
        #: Where the server pointed (``Location``), with the API key removed; None if it did not.
        self.location = location
        super().__init__(status_code, message, body, **kwargs)


class BadRequestError(APIError):
    """400: the server rejected the payload."""


class AuthenticationError(APIError):
    """401: the API key is missing or invalid."""


class PermissionDeniedError(APIError):
    """403: a subscription, limit or channel restriction prevented the operation."""


class NotFoundError(APIError):
    """404: no such instance, webhook or path."""


class ConflictError(APIError):
    """409: the resource is in a state that forbids the operation."""


class RateLimitError(APIError):
    """429: too many requests. ``retry_after`` is the wait the server asked for, in seconds."""

    failure: FailureClass | None = FailureClass.THROTTLED


class ServerError(APIError):
    """5xx: the server failed."""

    failure: FailureClass | None = FailureClass.AMBIGUOUS


class UpstreamError(ServerError):
    """502: Wachat could not create the instance or return its id (it may exist anyway)."""


class APIConnectionError(WachatError):
    """No usable response arrived: the connection failed, was reset, or the body was cut off."""

    def __init__(
        self,
        message: str,
        *,
        failure: FailureClass,
        method: str = "",
        path: str = "",
        attempts: int = 1,
    ) -> None:
        self.failure = failure
        self.method = method
        self.path = path
        super().__init__(f"{message} ({method} {path})" if method else message, attempts=attempts)


class APITimeoutError(APIConnectionError, TimeoutError):
    """The request timed out (also a :class:`TimeoutError`)."""


class ResponseValidationError(WachatError):
    """A success response whose body could not be decoded into the documented shape."""

    failure: FailureClass | None = FailureClass.FATAL

    def __init__(
        self,
        message: str,
        *,
        field: str | None,
        body: str,
        status_code: int = 200,
        attempts: int = 1,
    ) -> None:
        #: Dotted path of the offending JSON field (``instance.apiInstanceName``), or None.
        self.field = field
        #: The start of the response body as text (the API key removed).
        self.body = body
        self.status_code = status_code
        super().__init__(message, attempts=attempts)


class ResponseTooLargeError(ResponseValidationError):
    """A success response larger than the client reads (``max_response_bytes`` or, for images,
    ``max_image_bytes``). Reading stopped at ``limit`` bytes, so memory never held more."""

    def __init__(self, message: str, *, limit: int, **kwargs: Any) -> None:
        self.limit = limit
        super().__init__(message, **kwargs)


class OutcomeUnknownError(WachatError):
    """A non-idempotent call (create, send) may or may not have taken effect.

    The client did not resend it, because resending could duplicate an instance or a message.
    ``request`` describes the call (operation, method, path); ``candidates`` holds the instances
    reconciliation found (none, or more than one).
    """

    def __init__(
        self,
        message: str,
        *,
        request: Any,
        candidates: Sequence[Any] = (),
        cause: BaseException | None = None,
        attempts: int = 1,
    ) -> None:
        self.request = request
        self.candidates = list(candidates)
        #: The failure that made the outcome unknown (a timeout, a reset, an unreadable answer).
        self.cause = cause
        super().__init__(message, attempts=attempts)


class UnreadableOutcomeError(ResponseValidationError, OutcomeUnknownError):
    """Wachat answered a create with success, but its answer could not be read and the instance
    could not be identified by listing. Both a :class:`ResponseValidationError` (``field`` and
    ``body`` say what was wrong) and an :class:`OutcomeUnknownError` (it was not resent)."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None,
        body: str,
        status_code: int,
        request: Any,
        candidates: Sequence[Any] = (),
        cause: BaseException | None = None,
        attempts: int = 1,
    ) -> None:
        # Both bases' fields, set here once (their __init__s would each call the other's).
        self.field = field
        self.body = body
        self.status_code = status_code
        self.request = request
        self.candidates = list(candidates)
        self.cause = cause
        WachatError.__init__(self, message, attempts=attempts)


class WaitTimeoutError(WachatError, TimeoutError):
    """``wait_until_connected`` ran out of time before the QR code was scanned."""

    def __init__(self, message: str, *, last_state: Any = None, attempts: int = 1) -> None:
        #: The last :class:`~wachat_async.InstanceState` seen.
        self.last_state = last_state
        super().__init__(message, attempts=attempts)


class MessageFailedError(WachatError):
    """``messages.wait_for_status``: a receipt said the message failed."""

    def __init__(self, message: str, *, record: Any = None, attempts: int = 1) -> None:
        #: The message's :class:`~wachat_async.MessageRecord`.
        self.record = record
        super().__init__(message, attempts=attempts)


class HookError(WachatError):
    """One of the client's :class:`~wachat_async.Hooks` raised: the call fails with this, and
    is not resent for it. The hook's exception is the ``__cause__``."""

    failure = FailureClass.FATAL

    def __init__(self, message: str, *, hook: str = "", name: str = "", attempts: int = 1) -> None:
        #: Which hook: ``on_request``, ``on_response``, ``on_retry`` or ``on_reconcile``.
        self.hook = hook
        #: The callable's qualified name.
        self.name = name
        super().__init__(message, attempts=attempts)


class WebhookSignatureError(WachatError):
    """An incoming webhook delivery failed verification; the message says which check failed."""


class WebhookPayloadError(WachatError, ValueError):
    """An incoming webhook delivery whose body is not a JSON object."""


class JournalError(WachatError):
    """A bulk journal that cannot be used: damaged, unreadable, or not a journal."""

    def __init__(self, message: str, *, path: str = "", attempts: int = 1) -> None:
        #: The journal file.
        self.path = path
        super().__init__(message, attempts=attempts)


class JournalInUseError(JournalError):
    """Another process has the journal open: two runs on one journal could duplicate work."""


class JournalMismatchError(JournalError):
    """The journal was written for another account (API key) or another base URL."""
