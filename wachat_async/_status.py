"""What an answer that is not a readable success means: the typed error for its status (from
:mod:`wachat_async.errors`), with the server's words (the key removed) and a hint of what
usually causes it, for the errors people meet first.

Hints carry a stable ``hint_code`` next to their text, so that an interface (the CLI) can say
the same thing in its own terms:

- ``logout_first``: a delete refused because the instance is still connected;
- ``not_wachat``: a 404 whose body is not the API's (``base_url`` is wrong);
- ``api_instance_name``: a 404 for a call that named an instance (the friendly name was given);
- ``retry_after_too_long``: the server asked to wait longer than ``max_retry_after``;
- ``retry_after``: the server asked to wait (and was waited for);
- ``sandbox_key``: a 401 from the sandbox, which accepts the key it printed when it started.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

from . import _json
from ._config import Settings
from ._decode import Undecodable
from ._reading import RawResponse
from ._request import Request
from ._security import Redactor
from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FailureClass,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    ResponseTooLargeError,
    ResponseValidationError,
    ServerError,
    UpstreamError,
    WachatError,
)

#: The header the sandbox (``wachat_async.testing``) marks its refusals of a key with.
SANDBOX_HEADER = "X-Wachat-Sandbox"

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
#: What a status means for one operation, said in the error: (hint code, hint).
_OPERATION_HINTS = {
    ("instances.delete", 409): (
        "logout_first",
        "The instance is still connected; log it out first (the logout path is not "
        "published: see AsyncWachat.request)",
    ),
}
#: How much of a server's text an error keeps (after the key is removed).
_MESSAGE_CHARS = 300
_BODY_CHARS = 8192
_TEXTUAL = ("application/json", "text/", "application/problem+json", "application/xml")


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


class AnswerErrors:
    """Builds the typed error for an answer, for one client (its settings and redactor)."""

    def __init__(self, settings: Settings, redact: Redactor) -> None:
        self.settings = settings
        self.redact = redact

    def for_status(self, request: Request, raw: RawResponse, attempt: int) -> WachatError:
        """The typed error for a non-2xx answer (or a 2xx larger than the client reads)."""
        status = raw.status
        redact = self.redact
        if 200 <= status < 300:  # a success that cannot be read: too large, or encoded oddly
            if raw.unreadable is not None:
                return ResponseValidationError(
                    f"Unexpected response from Wachat: {redact(raw.unreadable)}",
                    field=None,
                    body=self.quote(raw),
                    status_code=status,
                    attempts=attempt,
                )
            option, limit = raw.cap or ("max_response_bytes", self.settings.max_response_bytes)
            return ResponseTooLargeError(
                f"The answer is larger than {option} ({limit} bytes), so reading stopped "
                f"there; raise {option} if such answers are legitimate",
                limit=limit,
                field=None,
                body=self.quote(raw),
                status_code=status,
                attempts=attempt,
            )
        call = request.call
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
                self.quote(raw),
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
        code, hint = self._hint(request, raw, from_api, retry_after) or (None, None)
        return cls(
            status,
            message,
            self.quote(raw),
            retry_after=retry_after,
            failure=failure,
            hint=hint,
            hint_code=code,
            **common,
        )

    def _hint(
        self, request: Request, raw: RawResponse, from_api: bool, retry_after: float | None
    ) -> tuple[str, str] | None:
        """What usually causes this answer, as (hint code, hint), for the errors people meet
        first."""
        call, status, query, body = request.call, raw.status, request.query, request.body
        if (call.operation, status) in _OPERATION_HINTS:
            return _OPERATION_HINTS[call.operation, status]
        if status == 401 and SANDBOX_HEADER in raw.headers:
            return (
                "sandbox_key",
                "This is the Wachat sandbox: it accepts the API key it printed when it started "
                "(wachat sandbox prints it, with the base URL)",
            )
        if status == 404 and not from_api:
            return (
                "not_wachat",
                "That answer is not Wachat's: check base_url (it should end in /api/v1; "
                f"it is {self.settings.base_url})",
            )
        names_instance = bool(query and "instanceName" in query) or (
            isinstance(body, dict) and "instanceName" in body and call.path != "/instance/create"
        )
        if status == 404 and names_instance:
            return (
                "api_instance_name",
                "Every call after create takes the API instance name "
                "(created.instance.api_instance_name, like t1_abc123_jakarta_store), not the "
                "friendly name; instances.list() shows both",
            )
        if status in _THROTTLED and retry_after is not None:
            limit = self.settings.retry.max_retry_after
            if retry_after > limit:
                return (
                    "retry_after_too_long",
                    f"The server asked to wait {retry_after:g} s, more than max_retry_after "
                    f"({limit:g} s), so the call was not retried",
                )
            return "retry_after", f"The server asked to wait {retry_after:g} s"
        return None

    def undecodable(self, raw: RawResponse, problem: Undecodable, attempt: int) -> WachatError:
        return ResponseValidationError(
            self.redact(problem.message),
            # A path may run through member names the server chose (the QR answer is searched
            # under any of them), so it is server text like any other.
            field=None if problem.field is None else self.redact(problem.field),
            body=self.quote(raw),
            status_code=raw.status,
            attempts=attempt,
        )

    def quote(self, raw: RawResponse) -> str:
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
