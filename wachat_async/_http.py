"""The transport: owns one aiohttp session, sends one attempt, maps every failure to a typed error.

Nothing here retries; :mod:`wachat_async._retry` decides what happens after a failure, using the
:class:`~wachat_async.errors.FailureClass` each error carries.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import aiohttp
import attrs
from multidict import CIMultiDict, CIMultiDictProxy

from . import _json
from ._config import redact
from ._version import __version__
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FailureClass,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UpstreamError,
)

logger = logging.getLogger("wachat_async")

JSON = "application/json"
PNG = "image/png"
USER_AGENT = f"wachat-async/{__version__}"

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
_SNIPPET = 200


@attrs.frozen
class Call:
    """One API operation, described once: the transport runs it, the retry policy repeats it."""

    #: Name used in logs and errors, e.g. ``instances.create``.
    operation: str
    method: str
    path: str
    params: Mapping[str, str] | None = None
    json: Any = attrs.field(default=None, repr=False)
    accept: str = JSON

    @property
    def idempotent(self) -> bool:
        """Safe to resend after an ambiguous failure: reads, deletes and updates by id."""
        return self.method in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")


@attrs.frozen
class RawResponse:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes = attrs.field(repr=False)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


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
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def error_message(body: bytes) -> str:
    """The server's own words: JSON ``error``, ``message`` or ``details``, else a short snippet."""
    try:
        data = _json.loads(body)
    except (_json.JSONDecodeError, TypeError):
        data = None
    if isinstance(data, dict):
        for key in ("error", "message", "details"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
            if value not in (None, "", [], {}):
                return _json.dumps(value).decode()[:_SNIPPET]
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return "(empty body)"
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "…"


#: aiohttp before 3.11 resends idempotent requests on a dropped connection, with no switch.
_RESENDS_SILENTLY = "_retry_connection" not in getattr(aiohttp.ClientSession, "ATTRS", ())


def _connection_counter() -> aiohttp.TraceConfig:
    """Counts the connections each request takes (its ``trace_request_ctx``, when one is set)."""

    async def count(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: object
    ) -> None:
        if context.trace_request_ctx is not None:
            context.trace_request_ctx["count"] += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(count)
    trace.on_connection_reuseconn.append(count)
    return trace


def _headers(api_key: str, accept: str, has_body: bool) -> CIMultiDictProxy[str]:
    headers = CIMultiDict(
        {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT, "Accept": accept}
    )
    if has_body:
        headers["Content-Type"] = JSON
    return CIMultiDictProxy(headers)


class Transport:
    """Sends calls over one :class:`aiohttp.ClientSession`, opened lazily in the running loop."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        connect_timeout: float,
        pool_limit: int,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._connect_timeout = connect_timeout
        self._pool_limit = pool_limit
        self._session = session
        self._owns_session = session is None
        self._closed = False
        # Built once per client; aiohttp takes a multidict as is instead of copying a dict.
        self._headers = {
            (accept, has_body): _headers(api_key, accept, has_body)
            for accept in (JSON, PNG, "*/*")
            for has_body in (False, True)
        }
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    @property
    def closed(self) -> bool:
        return self._closed

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self._closed:
                raise RuntimeError("This Wachat client is closed; create a new one.")
            # Created here, inside the running loop, as aiohttp requires.
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_limit),
                raise_for_status=False,
                trace_configs=[_connection_counter()] if _RESENDS_SILENTLY else None,
            )
            # aiohttp quietly resends an idempotent request once when its connection drops.
            # Every resend must go through the retry policy (counted, logged, and a DELETE's 404
            # after a lost response read as success), so turn that off on sessions we own.
            # aiohttp 3.10 has no switch: there the resend is detected instead (see send).
            if not _RESENDS_SILENTLY:
                session._retry_connection = False
            self._session = session
        return self._session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            # sock_connect times only real connection attempts (raising ConnectionTimeoutError,
            # i.e. "not sent"); unlike connect=, it arms no timer when a pooled connection is
            # reused, which is most requests.
            timeout = aiohttp.ClientTimeout(
                total=seconds, sock_connect=min(seconds, self._connect_timeout)
            )
            self._timeouts[seconds] = timeout
        return timeout

    async def send(self, call: Call, timeout: float) -> RawResponse:
        """One attempt. Returns a 2xx response; raises a typed error for anything else."""
        session = self._get_session()
        data = None if call.json is None else _json.dumps(call.json)
        headers = self._headers.get((call.accept, data is not None))
        if headers is None:
            headers = _headers(self._api_key, call.accept, data is not None)
        started = time.perf_counter()
        connects = {"count": 0} if _RESENDS_SILENTLY else None
        try:
            async with session.request(
                call.method,
                self._base_url + call.path,
                params=call.params,
                data=data,
                headers=headers,
                timeout=self._timeout(timeout),
                trace_request_ctx=connects,
            ) as resp:
                body = await resp.read()
                raw = RawResponse(resp.status, resp.headers, body)
        except aiohttp.ClientSSLError as exc:
            raise self._connection_error(call, "TLS failure", exc, FailureClass.FATAL) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise self._connection_error(
                call, "Timed out connecting", exc, FailureClass.NOT_SENT, timed_out=True
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise self._connection_error(
                call, "Could not connect", exc, FailureClass.NOT_SENT
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise InvalidRequestError(f"Invalid URL for {call.method} {call.path}") from exc
        except TimeoutError as exc:
            # Checked after aiohttp's own classes: on 3.11 TimeoutError is also an OSError.
            raise self._connection_error(
                call, f"Timed out after {timeout:g} s", exc, FailureClass.AMBIGUOUS, timed_out=True
            ) from exc
        except aiohttp.ClientError as exc:
            # Reset, disconnect or cut-off body after the request was written: it may have landed.
            raise self._connection_error(
                call, "Connection lost", exc, FailureClass.AMBIGUOUS
            ) from exc
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %d in %.1f ms",
                call.method,
                call.path,
                raw.status,
                (time.perf_counter() - started) * 1000,
            )
        if raw.status >= 400:
            error = self._status_error(call, raw)
            # Two connections for one request: aiohttp resent it after the first was lost.
            error.resent_after_loss = connects is not None and connects["count"] > 1
            raise error
        return raw

    def _connection_error(
        self,
        call: Call,
        what: str,
        exc: BaseException,
        failure: FailureClass,
        *,
        timed_out: bool = False,
    ) -> APIConnectionError:
        detail = self._redact(f"{what}: {type(exc).__name__}: {exc}".rstrip(": "))
        cls = APITimeoutError if timed_out else APIConnectionError
        return cls(detail, failure=failure, method=call.method, path=call.path)

    def _status_error(self, call: Call, raw: RawResponse) -> APIError:
        status = raw.status
        cls = _ERROR_BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
        if status in _THROTTLED:
            failure = FailureClass.THROTTLED
        elif status >= 500:
            failure = FailureClass.AMBIGUOUS
        else:
            failure = FailureClass.FATAL
        return cls(
            status,
            self._redact(error_message(raw.body)),
            self._redact(raw.text()),
            method=call.method,
            path=call.path,
            headers={k: self._redact(v) for k, v in raw.headers.items()},
            retry_after=parse_retry_after(raw.headers),
            failure=failure,
        )

    def _redact(self, text: str) -> str:
        return redact(text, self._api_key)

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()
        elif session is not None and not self._owns_session:
            self._session = session  # never close what we did not open; keep it usable for peers

    def abandon(self) -> None:
        """Forget the session without touching its sockets: after fork they are the parent's.

        Closing them from the child would unregister them from the epoll set the two processes
        share, so the session is only detached, and its pool emptied so that neither object
        warns "Unclosed ..." when the child collects them.
        """
        session, self._session = self._session, None
        self._closed = True
        if session is not None and self._owns_session:
            connector = session.connector
            session.detach()
            conns = getattr(connector, "_conns", None)
            if isinstance(conns, dict):
                conns.clear()
