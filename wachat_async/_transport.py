"""The transport: one attempt over one aiohttp session, and the network failures it can meet.

It owns the session (opened lazily inside the running loop, as aiohttp requires, and closed
when that loop shuts down if nobody closed it first), sends one :class:`Call`, and hands back a
:class:`RawResponse` whatever its status: deciding what a status means is the executor's job.
It follows no redirect, reads at most a size cap (counted while reading, so memory never holds
more), and turns network failures into :class:`~wachat_async.errors.APIConnectionError` with the
failure class the retry policy needs. Nothing here retries.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import urllib.request
import zlib
from collections.abc import AsyncGenerator, Mapping
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.payload import BytesPayload
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import _json
from ._config import Settings
from ._request import ANY, JSON, PNG, Call, Request
from ._security import Redactor
from ._version import __version__
from .errors import APIConnectionError, APITimeoutError, FailureClass, InvalidRequestError

logger = logging.getLogger("wachat_async")

USER_AGENT = f"wachat-async/{__version__}"

#: What is read of an answer that announces more than its cap: enough to quote in an error.
_PREFIX_OF_OVERSIZED = 8192
#: The most read of an error answer (3xx, 4xx, 5xx): only its start is ever quoted.
_ERROR_BODY_BYTES = 65536
_CHUNK = 65536
#: How much of a network exception's text an APIConnectionError quotes.
_DETAIL_CHARS = 400
#: Content codings the client decodes itself (bounded, see _Inflater); anything else is
#: reported as unreadable rather than handed to a decoder as if it were plain.
_INFLATABLE = frozenset({"gzip", "x-gzip", "deflate"})
#: gzip members in one body: a real answer has one; a bomb may have thousands.
_MAX_MEMBERS = 64
_REMEMBERED_QUERIES = 1024


_MEDIA_TYPES: dict[str, str] = {}


def media_type(header: str) -> str:
    """``application/json`` from ``Application/JSON; charset=utf-8``; remembered, since a server
    sends the same few values again and again."""
    known = _MEDIA_TYPES.get(header)
    if known is None:
        known = header.split(";", 1)[0].strip().lower()
        if len(_MEDIA_TYPES) < 256:
            _MEDIA_TYPES[header] = known
    return known


class RawResponse:
    """An answer as it arrived: status, headers and (at most a cap of) the body, decoded from
    its content coding."""

    __slots__ = (
        "body",
        "cap",
        "headers",
        "readable",
        "resent",
        "status",
        "unreadable",
    )

    def __init__(
        self,
        status: int,
        headers: CIMultiDictProxy[str],
        body: bytes,
        *,
        complete: bool = True,
        resent: bool = False,
        cap: tuple[str, int] | None = None,
        unreadable: str | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        #: True when aiohttp (3.10) silently resent the request after losing the first answer.
        self.resent = resent
        #: The option and size of the cap that stopped the reading (``("max_image_bytes",
        #: 10485760)``), when it did.
        self.cap = cap
        #: Why the body could not be read although it was not too large (an unknown or corrupt
        #: content coding); None when it is fine.
        self.unreadable = unreadable
        #: The whole body arrived and can be decoded (a plain attribute: read on every call).
        self.readable = complete and unreadable is None

    @property
    def content_type(self) -> str:
        """The media type, lowercase, without parameters (``application/json``)."""
        return media_type(self.headers.get("Content-Type", ""))

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


#: aiohttp before 3.11 resends idempotent requests on a dropped connection, with no switch.
_RESENDS_SILENTLY = "_retry_connection" not in getattr(aiohttp.ClientSession, "ATTRS", ())
#: Whether a request can turn off a (caller's) session's decompression, so that every body is
#: inflated by _Inflater, within the caps. Older aiohttp inflates without any bound.
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


async def _close_when_loop_ends(session: aiohttp.ClientSession) -> AsyncGenerator[None]:
    """Suspended for the session's life. The loop closes async generators when it shuts down
    (``asyncio.run`` does) or when this one is garbage collected, so a client nobody closed
    still closes its session, on its own loop, without an "Unclosed client session" warning."""
    try:
        yield
    finally:
        if not session.closed:
            await session.close()


#: Guards of sessions abandoned after fork: kept so they are never finalized in the child.
_ABANDONED: list[object] = []


class Transport:
    """Sends calls over one :class:`aiohttp.ClientSession`: the caller's, or one of its own."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession | None = None) -> None:
        self._settings = settings
        self._base_url = URL(settings.base_url)
        self._owned = session is None
        self._session = session
        self._loop: asyncio.AbstractEventLoop | None = None
        self._guard: AsyncGenerator[None] | None = None
        self._closed = False
        self.redact = Redactor(settings.api_key)
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
        proxy = _proxy_for(settings)
        # A session of ours carries these as its defaults, so a JSON call passes no headers.
        # Not behind a proxy: aiohttp copies a session's default headers into the proxy's
        # CONNECT (Authorization renamed Proxy-Authorization), so the key would reach the proxy.
        # There, as with a caller's session, they go with each request, to the API alone.
        self._session_headers = identity if self._owned and proxy is None else None
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
        self._watches = self._owned and (_RESENDS_SILENTLY or proxy is not None)
        #: An answer that announces at most this many bytes is read at once.
        self._within_caps = min(settings.max_response_bytes, settings.max_image_bytes)
        self._default_timeout = self.timeout(settings.timeout)
        self._extra: dict[str, Any] = {"allow_redirects": False}
        if proxy is not None:
            self._extra["proxy"] = proxy
        if not self._owned:
            self._extra["raise_for_status"] = False
        #: Bodies arrive as sent (compressed ones inflated here, bounded): our session never
        #: decompresses; a caller's is told not to, where aiohttp lets a request say so.
        self._inflates = self._owned or _PER_REQUEST_DECOMPRESS
        if not self._owned and _PER_REQUEST_DECOMPRESS:
            self._extra["auto_decompress"] = False
        elif not self._owned:
            self._inflates = not getattr(session, "auto_decompress", True)

    @property
    def closed(self) -> bool:
        return self._closed

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

    async def send(self, request: Request, attempt: int, started: float) -> RawResponse:
        """One attempt of ``request``; any status comes back. Raises APIConnectionError when no
        answer does.

        ``attempt`` and ``started`` (``time.monotonic()`` when the first attempt began) go into
        the error's text and ``attempts``.
        """
        session = self._session
        if session is None or (
            self._owned and (session.closed or self._loop is not asyncio.get_running_loop())
        ):
            session = await self._open()
        call, query, body, timeout = request.call, request.query, request.body, request.timeout
        url = self._urls.get(call.path) or self.url(call.path)
        if query:
            url = self._with_query(url, call.path, query)
        data = None if body is None else _json_payload(call, body)
        kwargs = self._extra
        headers = self._headers.get(call.accept, None)
        # A caller's session gets its headers with every request, so it always passes here.
        if headers is not None or timeout != self._settings.timeout:
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
                    raw = await self._read_capped(resp)
        except _NETWORK_ERRORS as exc:
            what, failure = _network_failure(exc, timeout)
            if connects is not None and connects["opening"] and failure is not FailureClass.FATAL:
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

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> RawResponse:
        """The body of an answer that is large, compressed, or of unannounced length: read up
        to its cap (images have their own), counting as it arrives, and inflated as it arrives
        when compressed (the inflated size counts: a small gzip can inflate to gigabytes)."""
        settings = self._settings
        if media_type(resp.headers.get("Content-Type", "")).startswith("image/"):
            cap = ("max_image_bytes", settings.max_image_bytes)
        else:
            cap = ("max_response_bytes", settings.max_response_bytes)
        limit = cap[1]
        if not 200 <= resp.status < 300:
            limit = min(limit, _ERROR_BODY_BYTES)  # an error's body is only ever quoted
        coding = resp.headers.get("Content-Encoding", "").strip().lower()
        inflater: _Inflater | None = None
        unreadable: str | None = None
        if coding in _INFLATABLE and self._inflates:
            inflater = _Inflater(coding)
        elif coding not in ("", "identity") and self._inflates:
            unreadable = f"the answer is compressed as {coding!r}, which the client does not decode"
        length = resp.content_length
        if inflater is None and length is not None and length > limit:
            limit = min(limit, _PREFIX_OF_OVERSIZED)  # it said so: read only enough to quote
            body, _ = await _read_at_most(resp, limit, None)
            complete = False
        else:
            try:
                body, complete = await _read_at_most(resp, limit, inflater)
            except zlib.error:
                body, complete = b"", True
                unreadable = f"the answer's {coding} compression is corrupt"
        if not complete or unreadable:
            resp.close()  # the rest is never read: the connection cannot be reused
        return RawResponse(
            resp.status,
            resp.headers,
            body,
            complete=complete,
            cap=None if complete else cap,
            unreadable=unreadable,
        )

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

    async def _open(self) -> aiohttp.ClientSession:
        """The session for the running loop: the caller's, or a new one of ours."""
        if not self._owned:
            assert self._session is not None
            return self._session
        if self._closed:
            raise RuntimeError("This Wachat client is closed; create a new one.")
        loop = asyncio.get_running_loop()
        old, old_loop = self._session, self._loop
        if old is not None and not old.closed:
            if old_loop is not None and old_loop.is_running():
                raise RuntimeError(
                    "This AsyncWachat is in use on another event loop (another thread?); "
                    "create one client per event loop."
                )
            self._detach()  # its loop is gone or stopped: nothing can close it properly now
        settings = self._settings
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.pool_limit),
            headers=self._session_headers,
            timeout=self._default_timeout,
            raise_for_status=False,
            auto_decompress=False,
            # Environment proxies are resolved once per client (_proxy_for): aiohttp's own
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
        guard = _close_when_loop_ends(session)
        await anext(guard)
        self._session, self._loop, self._guard = session, loop, guard
        return session

    async def aclose(self) -> None:
        """Close our session (never the caller's). Idempotent."""
        self._closed = True
        if not self._owned:
            return
        guard, self._guard = self._guard, None
        session, self._session = self._session, None
        if session is not None and not session.closed:
            if self._loop is asyncio.get_running_loop():
                await session.close()
            else:
                self._detach_session(session)
        if guard is not None:
            await guard.aclose()  # its finally finds the session closed

    def abandon(self) -> None:
        """Forget the session without touching its sockets: after fork they are the parent's."""
        self._closed = True
        if self._owned:
            self._detach()

    def _detach(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None:
            _ABANDONED.append(guard)
        session, self._session = self._session, None
        if session is not None:
            self._detach_session(session)

    @staticmethod
    def _detach_session(session: aiohttp.ClientSession) -> None:
        """Mark ``session`` closed without I/O: its pooled sockets belong to a loop (or a parent
        process) we must not touch. Emptying the pool keeps either object from warning."""
        connector = session.connector
        session.detach()
        conns = getattr(connector, "_conns", None)
        if isinstance(conns, dict):
            conns.clear()


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


def _proxy_for(settings: Settings) -> str | None:
    """The proxy to use for ``base_url``: ``proxy=``, else (with ``trust_env``) the standard
    environment variables (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``)."""
    if settings.proxy:
        return settings.proxy
    if not settings.trust_env:
        return None
    parts = urlsplit(settings.base_url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all") or None


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


class _Inflater:
    """Inflates a gzip or deflate body as it arrives, never producing more than asked for, so
    a bomb is stopped at the cap instead of being inflated first and measured after."""

    def __init__(self, coding: str) -> None:
        self._gzip = coding != "deflate"
        self._members = 1
        self._inflate: Any = zlib.decompressobj(31) if self._gzip else None

    def feed(self, data: bytes, limit: int) -> bytes:
        """At most ``limit`` (> 0) bytes inflated from ``data`` (and what it left over)."""
        if self._inflate is None:
            # "deflate" is meant to be zlib-wrapped; some servers send it raw.
            self._inflate = zlib.decompressobj(15 if data[:1] and data[0] & 0x0F == 8 else -15)
        out = self._inflate.decompress(data, limit)
        # Concatenated gzip members are one body; each continues in a fresh inflater.
        while self._gzip and self._inflate.eof and self._inflate.unused_data and len(out) < limit:
            self._members += 1
            if self._members > _MAX_MEMBERS:
                raise zlib.error(f"more than {_MAX_MEMBERS} gzip members")
            rest = self._inflate.unused_data
            self._inflate = zlib.decompressobj(31)
            out += self._inflate.decompress(rest, limit - len(out))
        return bytes(out)


async def _read_at_most(
    resp: aiohttp.ClientResponse, cap: int, inflater: _Inflater | None
) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of the body (inflated, with an inflater), and whether that was all
    of it. What arrives on the wire is capped too: a compressed body that inflates to little
    may still be endless."""
    chunks: list[bytes] = []
    size = wire = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        wire += len(chunk)
        if inflater is not None:
            chunk = inflater.feed(chunk, cap - size + 1)  # one more: to see it go past
        if size + len(chunk) > cap or wire > cap:
            chunks.append(chunk[: cap - size])
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), True
