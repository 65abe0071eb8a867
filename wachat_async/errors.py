"""The exception tree. Every failure the client reports is a :class:`WachatError`.

::

    WachatError
    ├── InvalidRequestError (also ValueError)   bad input, caught before anything is sent
    ├── APIError                                 the server answered with an error status
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
    ├── OutcomeUnknownError                      a create or send may or may not have happened
    │   └── UnreadableOutcomeError (also ResponseValidationError)
    ├── WaitTimeoutError (also TimeoutError)     ``wait_until_connected`` gave up
    └── WebhookSignatureError                    an incoming delivery failed verification

Every error carries ``attempts``: how many requests were made before it was raised.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._http import Call

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "FailureClass",
    "InvalidRequestError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseValidationError",
    "ServerError",
    "UnreadableOutcomeError",
    "UpstreamError",
    "WachatError",
    "WaitTimeoutError",
    "WebhookSignatureError",
]


class FailureClass(enum.Enum):
    """How a failed attempt may be retried (see the retry policy)."""

    #: The request never left the client (DNS, refused, connect timeout): any call may be resent.
    NOT_SENT = "not_sent"
    #: The server refused to process it for now (429, 503, 408): resend after the asked wait.
    THROTTLED = "throttled"
    #: It may have been processed (read timeout, reset, 500/502/504): resend only idempotent calls.
    AMBIGUOUS = "ambiguous"
    #: Resending cannot help (other 4xx, TLS errors, a 2xx that does not decode).
    FATAL = "fatal"


class WachatError(Exception):
    """Base class of every error raised by wachat_async."""

    #: Requests made for the call that failed (1 when it was not retried).
    attempts: int = 1
    #: Retry class of the failure; None for errors that never reached the network.
    failure: FailureClass | None = None


class InvalidRequestError(WachatError, ValueError):
    """Bad input, detected before anything was sent."""


class APIError(WachatError):
    """The server answered with an error status."""

    failure = FailureClass.FATAL

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
    ) -> None:
        self.status_code = status_code
        #: True when aiohttp itself resent the request after losing the first response.
        self.resent_after_loss = False
        #: Seconds the server asked to wait before trying again (``Retry-After``), if it said.
        self.retry_after = retry_after
        if failure is not None:
            self.failure = failure
        self.message = message
        #: The response body as text (with the API key redacted, should the server echo it).
        self.body = body
        self.method = method
        self.path = path
        self.headers: Mapping[str, str] = dict(headers or {})
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" ({self.method} {self.path})" if self.method else ""
        return f"{self.status_code} {self.message}{where}"


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

    failure = FailureClass.THROTTLED


class ServerError(APIError):
    """5xx: the server failed."""

    failure = FailureClass.AMBIGUOUS


class UpstreamError(ServerError):
    """502: Wachat could not create the instance or return its id (it may exist anyway)."""


class APIConnectionError(WachatError):
    """No usable response arrived: the connection failed, was reset, or the body was cut off."""

    def __init__(
        self, message: str, *, failure: FailureClass, method: str = "", path: str = ""
    ) -> None:
        self.failure = failure
        self.method = method
        self.path = path
        super().__init__(f"{message} ({method} {path})" if method else message)


class APITimeoutError(APIConnectionError, TimeoutError):
    """The request timed out (also a :class:`TimeoutError`)."""


class ResponseValidationError(WachatError):
    """A success response whose body could not be decoded into the documented shape."""

    failure = FailureClass.FATAL

    def __init__(
        self, message: str, *, field: str | None, body: str, status_code: int = 200
    ) -> None:
        #: Dotted path of the offending JSON field (``instance.apiInstanceName``), or None.
        self.field = field
        #: The raw response body as text.
        self.body = body
        self.status_code = status_code
        super().__init__(message)


class OutcomeUnknownError(WachatError):
    """A non-idempotent call (create, send) may or may not have taken effect.

    The client did not resend it, because resending could duplicate an instance or a message.
    ``candidates`` holds the instances reconciliation found (zero, or more than one).
    """

    def __init__(
        self,
        message: str,
        *,
        request: Call,
        candidates: Sequence[Any] = (),
        cause: BaseException | None = None,
    ) -> None:
        self.request = request
        self.candidates = list(candidates)
        self.cause = cause
        super().__init__(message)


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
        request: Call,
        candidates: Sequence[Any] = (),
        cause: BaseException | None = None,
    ) -> None:
        WachatError.__init__(self, message)  # both bases' fields are set here, once
        self.field = field
        self.body = body
        self.status_code = status_code
        self.request = request
        self.candidates = list(candidates)
        self.cause = cause


class WaitTimeoutError(WachatError, TimeoutError):
    """``wait_until_connected`` ran out of time before the QR code was scanned."""

    def __init__(self, message: str, *, last_state: Any = None) -> None:
        self.last_state = last_state
        super().__init__(message)


class WebhookSignatureError(WachatError):
    """An incoming webhook delivery failed verification; the message says which check failed."""
