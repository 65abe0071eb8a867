"""The transport: sends one :class:`~wachat_async._request.Request` and hands back a
:class:`~wachat_async._reading.RawResponse` whatever its status (deciding what a status means is
:mod:`~wachat_async._status`'s job), or turns the network failure it met into an
:class:`~wachat_async.errors.APIConnectionError` with the failure class the retry policy needs,
through one table (:data:`_FAILURES`). It follows no redirect and sends the client's identity
headers to the API alone, never to a proxy. Nothing here retries.

The session's life (loops, fork) is :mod:`~wachat_async._session`'s; reading an answer within
its caps is :mod:`~wachat_async._reading`'s.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.payload import BytesPayload
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import _json
from ._config import Settings
from ._proxy import proxy_for
from ._reading import RawResponse, read_bounded
from ._request import ANY, JSON, PNG, Call, Request
from ._security import Redactor, url_credentials
from ._session import SessionLife
from ._version import __version__
from .errors import APIConnectionError, APITimeoutError, FailureClass, InvalidRequestError

logger = logging.getLogger("wachat_async")

USER_AGENT = f"wachat-async/{__version__}"

#: How much of a network exception's text an APIConnectionError quotes.
_DETAIL_CHARS = 400
_REMEMBERED_QUERIES = 1024


#: aiohttp before 3.11 resends idempotent requests on a dropped connection, with no switch.
_RESENDS_SILENTLY = "_retry_connection" not in getattr(aiohttp.ClientSession, "ATTRS", ())
#: Whether a request can turn off a (caller's) session's decompression, so that every body is
#: inflated within the caps (see _reading). Older aiohttp inflates without any bound.
_PER_REQUEST_DECOMPRESS = (
    "auto_decompress" in inspect.signature(aiohttp.ClientSession._request).parameters
)


def _connection_watch() -> aiohttp.TraceConfig:
    """Watches the connections each request takes (through its ``trace_request_ctx``, when one
    is set): how many (aiohttp 3.10 resends silently on a new one), and whether one was still
    being opened when the request failed. Through a proxy, opening includes the CONNECT tunnel
    and the TLS handshake behind it: a failure then means nothing reached the API."""

    async def started(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: object
    ) -> None:
        if context.trace_request_ctx is not None:
            context.trace_request_ctx["count"] += 1
            context.trace_request_ctx["opening"] = True

    async def opened(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: object
    ) -> None:
        if context.trace_request_ctx is not None:
            context.trace_request_ctx["opening"] = False

    async def reused(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: object
    ) -> None:
        if context.trace_request_ctx is not None:
            context.trace_request_ctx["count"] += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(started)
    trace.on_connection_create_end.append(opened)
    trace.on_connection_reuseconn.append(reused)
    return trace


class Transport:
    """Sends calls over one :class:`aiohttp.ClientSession`: the caller's, or one of its own."""

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession | None = None,
        *,
        shares: Transport | None = None,
    ) -> None:
        """A transport for ``settings`` over ``session`` (None: one of its own), or over the
        session of ``shares`` (a client made by ``with_options``: same pool, other options)."""
        self._settings = settings
        self._base_url = URL(settings.base_url)
        self._life: SessionLife = (
            SessionLife(session, self._new_session) if shares is None else shares._life
        )
        #: The timeout our session applies when a request names none.
        self._session_timeout: float = (
            settings.timeout if shares is None else shares._session_timeout
        )
        owned = self._life.owned
        # Resolved once per client; its credentials are secrets like the key.
        proxy = proxy_for(settings)
        self.redact = Redactor(settings.api_key, *url_credentials(proxy))
        self._urls: dict[str, URL] = {}
        self._query_urls: dict[tuple[Any, ...], URL] = {}
        # One header per name, whatever its letter case: the user's default_headers replace
        # ours ({"user-agent": ...} must not make a second User-Agent, which servers refuse).
        identity = CIMultiDict(
            {
                "Authorization": f"Bearer {settings.api_key}",
                "User-Agent": USER_AGENT,
                "Accept": JSON,
                # Compressed answers could inflate past the size caps before they are counted.
                "Accept-Encoding": "identity",
            }
        )
        identity.update(settings.default_headers)
        #: The headers every request carries, the key among them (observers redact them).
        self.identity: Mapping[str, str] = identity
        # A session of ours carries these as its defaults, so a JSON call passes no headers.
        # Not behind a proxy: aiohttp copies a session's default headers into the proxy's
        # CONNECT (Authorization renamed Proxy-Authorization), so the key would reach the proxy.
        # There, as with a caller's session, they go with each request, to the API alone.
        self._session_headers = identity if owned and proxy is None else None
        per_request = self._session_headers is None
        self._headers: dict[str, CIMultiDictProxy[str] | None] = {
            accept: (
                _with_accept(identity, accept)
                if per_request
                else None
                if accept == JSON
                else _with_accept(CIMultiDict(), accept)
            )
            for accept in (JSON, PNG, ANY)
        }
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        #: Connections are watched where it matters: on aiohttp 3.10, which resends silently,
        #: and through a proxy, where a tunnel that fails to open means nothing was sent.
        self._watches = owned and (_RESENDS_SILENTLY or proxy is not None)
        #: An answer that announces at most this many bytes is read at once.
        self._within_caps = min(settings.max_response_bytes, settings.max_image_bytes)
        self._default_timeout = self.timeout(settings.timeout)
        self._extra: dict[str, Any] = {"allow_redirects": False}
        if proxy is not None:
            self._extra["proxy"] = proxy
        if not owned:
            self._extra["raise_for_status"] = False
        #: Bodies arrive as sent (compressed ones inflated here, bounded): our session never
        #: decompresses; a caller's is told not to, where aiohttp lets a request say so.
        self._inflates = owned or _PER_REQUEST_DECOMPRESS
        if not owned and _PER_REQUEST_DECOMPRESS:
            self._extra["auto_decompress"] = False
        elif not owned:
            self._inflates = not getattr(session, "auto_decompress", True)

    @property
    def closed(self) -> bool:
        return self._life.closed

    def url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(f"{self._base_url}{path}")
        return url

    def _with_query(self, url: URL, path: str, params: Mapping[str, str]) -> URL:
        """``url`` with ``params``, remembered: the same instance is asked about again and
        again (polling its state, its QR), and encoding a query costs as much as parsing the
        answer."""
        key = (path, *params.items())
        found = self._query_urls.get(key)
        if found is None:
            if len(self._query_urls) >= _REMEMBERED_QUERIES:
                self._query_urls.clear()
            found = self._query_urls[key] = url.with_query(params)
        return found

    def timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            # sock_connect times only real connection attempts (a "not sent" failure); unlike
            # connect=, it arms no timer when a pooled connection is reused, which is most calls.
            timeout = aiohttp.ClientTimeout(
                total=seconds, sock_connect=min(seconds, self._settings.connect_timeout)
            )
            self._timeouts[seconds] = timeout
        return timeout

    async def aclose(self) -> None:
        """Close our session (never the caller's). Idempotent."""
        await self._life.aclose()

    def abandon(self) -> None:
        """Forget the session without touching its sockets: after fork they are the parent's."""
        self._life.abandon()

    def _new_session(self) -> aiohttp.ClientSession:
        settings = self._settings
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.pool_limit),
            headers=self._session_headers,
            timeout=self._default_timeout,
            raise_for_status=False,
            auto_decompress=False,
            # Environment proxies are resolved once per client (proxy_for): aiohttp's own
            # trust_env looks them up, and reads ~/.netrc, in a thread for every request.
            trust_env=False,
            trace_configs=[_connection_watch()] if self._watches else None,
        )
        # aiohttp quietly resends an idempotent request once when its connection drops. Every
        # resend must go through the retry policy (counted, logged, and a DELETE's 404 after a
        # lost answer read as success), so turn that off. aiohttp 3.10 has no switch: there the
        # resend is detected by counting connections instead.
        if not _RESENDS_SILENTLY:
            session._retry_connection = False
        return session

    async def send(self, request: Request, attempt: int, started: float) -> RawResponse:
        """One attempt of ``request``; any status comes back. Raises APIConnectionError when no
        answer does.

        ``attempt`` and ``started`` (``time.monotonic()`` when the first attempt began) go into
        the error's text and ``attempts``.
        """
        life = self._life
        session = life.session
        if session is None or (
            life.owned and (session.closed or life.loop is not asyncio.get_running_loop())
        ):
            session = await life.open()
        call, query, body, timeout = request.call, request.query, request.body, request.timeout
        url = self._urls.get(call.path) or self.url(call.path)
        if query:
            url = self._with_query(url, call.path, query)
        data = None if body is None else _json_payload(call, body)
        kwargs = self._extra
        headers = self._headers.get(call.accept, None)
        # A caller's session gets its headers with every request, so it always passes here.
        if headers is not None or timeout != self._session_timeout:
            kwargs = {**kwargs, "headers": headers, "timeout": self.timeout(timeout)}
        connects: dict[str, Any] | None = None
        if self._watches:
            connects = {"count": 0, "opening": False}
            kwargs = {**kwargs, "trace_request_ctx": connects}
        error: APIConnectionError | None = None
        begun = time.perf_counter() if logger.isEnabledFor(logging.DEBUG) else 0.0
        try:
            async with session.request(call.method, url, data=data, **kwargs) as resp:
                length = resp.content_length
                if (
                    length is not None
                    and length <= self._within_caps
                    and "Content-Encoding" not in resp.headers
                ):
                    raw = RawResponse(resp.status, resp.headers, await resp.read())
                else:
                    raw = await read_bounded(
                        resp,
                        self._settings.max_response_bytes,
                        self._settings.max_image_bytes,
                        self._inflates,
                    )
        except _NETWORK_ERRORS as exc:
            what, failure = _network_failure(exc, timeout)
            if connects is not None and connects["opening"] and failure is FailureClass.AMBIGUOUS:
                # The connection (through a proxy: its tunnel) never opened, so the request
                # never left: whatever the proxy did, the API saw nothing.
                what, failure = "Could not open the connection", FailureClass.NOT_SENT
            error = self._failed(call, what, exc, failure, attempt, started)
        if error is not None:
            # Raised here, outside the except blocks, so that neither __cause__ nor __context__
            # carries aiohttp's exception (whose request_info holds the Authorization header).
            raise error
        if connects is not None and connects["count"] > 1:
            raw.resent = True
        if begun:
            logger.debug(
                "%s %s -> %d in %.1f ms",
                call.method,
                call.path,
                raw.status,
                (time.perf_counter() - begun) * 1000,
            )
        return raw

    def _failed(
        self,
        call: Call,
        what: str,
        exc: BaseException,
        failure: FailureClass,
        attempt: int,
        started: float,
    ) -> APIConnectionError:
        # Redacted, and cut: aiohttp quotes what it could not parse (a hostile server can make
        # that megabytes of text, or echo the key in it).
        said = str(exc)
        if said:
            detail = self.redact.snippet(f"{what}: {type(exc).__name__}: {said}", _DETAIL_CHARS)
        else:  # a bare TimeoutError says nothing its class name would add to ``what``
            detail = what if isinstance(exc, TimeoutError) else f"{what}: {type(exc).__name__}"
        if attempt > 1:
            detail += f" ({attempt} attempts over {time.monotonic() - started:.1f} s)"
        cls = APITimeoutError if isinstance(exc, TimeoutError) else APIConnectionError
        return cls(
            detail,
            failure=failure,
            method=call.method,
            path=call.path,
            attempts=attempt,
        )


def _json_payload(call: Call, body: Any) -> BytesPayload:
    try:
        encoded = _json.dumps(body)
    except (UnicodeEncodeError, ValueError, TypeError) as exc:
        problem = type(exc).__name__
    else:
        return BytesPayload(encoded, content_type=JSON)
    raise InvalidRequestError(
        f"{call.operation}: the request holds text or values that cannot be sent as JSON "
        f"({problem})"
    )


def _with_accept(headers: CIMultiDict[str], accept: str) -> CIMultiDictProxy[str]:
    merged = CIMultiDict(headers)
    merged["Accept"] = accept
    return CIMultiDictProxy(merged)


#: Every network failure the transport meets, and what it means, most specific first: whether
#: the request may have reached the API decides whether the retry policy may resend it.
_FAILURES: tuple[
    tuple[type[BaseException] | tuple[type[BaseException], ...], str, FailureClass], ...
] = (
    (aiohttp.ClientSSLError, "TLS failure", FailureClass.FATAL),
    (aiohttp.ConnectionTimeoutError, "Timed out connecting", FailureClass.NOT_SENT),
    (aiohttp.ClientConnectorError, "Could not connect", FailureClass.NOT_SENT),
    # The proxy refused the tunnel (CONNECT) to the API: nothing reached the API.
    (aiohttp.ClientHttpProxyError, "The proxy refused", FailureClass.NOT_SENT),
    (aiohttp.InvalidURL, "Invalid URL", FailureClass.FATAL),
    # After aiohttp's own classes: on 3.11 TimeoutError is also an OSError.
    (TimeoutError, "Timed out", FailureClass.AMBIGUOUS),
    # Reset, disconnect, cut-off or garbled answer after the request was written: it may have
    # landed.
    (
        (aiohttp.ClientError, HttpProcessingError, OSError, ValueError),
        "Connection lost",
        FailureClass.AMBIGUOUS,
    ),
)
_NETWORK_ERRORS = tuple(
    kind for kinds, _, _ in _FAILURES for kind in (kinds if isinstance(kinds, tuple) else (kinds,))
)


def _network_failure(exc: BaseException, timeout: float) -> tuple[str, FailureClass]:
    """What ``exc`` is called in an error, and its failure class, from :data:`_FAILURES`."""
    for kinds, what, failure in _FAILURES:
        if isinstance(exc, kinds):
            if failure is FailureClass.AMBIGUOUS and isinstance(exc, TimeoutError):
                what = f"Timed out after {timeout:g} s"
            return what, failure
    raise AssertionError(f"unclassified network error {type(exc).__name__}")  # pragma: no cover
