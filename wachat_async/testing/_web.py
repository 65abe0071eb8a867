"""What the fake API and the sandbox control endpoints share over HTTP.

One exception that means "the fake says no" (:class:`Refused`), the JSON error answer it
becomes (``{"success": false, "error": "..."}``), reading a JSON object body, the bearer
key of a request; and what keeps other web pages out (:class:`SiteGuard`, the headers of
every answer).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import hdrs, web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """The fake refuses: answered as ``{"success": false, "error": message}`` with ``status``.

    Raised by request validation and by the sandbox's state machine alike, so an in-process
    control call (``server.rotate_qr(...)``) and its HTTP twin fail with the same words.
    """

    def __init__(
        self, message: str, status: int = 400, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


def error_response(
    status: int, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response({"success": False, "error": message}, status=status, headers=headers)


def refusal_response(refusal: Refused) -> web.Response:
    return error_response(refusal.status, str(refusal), headers=refusal.headers)


async def json_object(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object body; ``{}`` for an empty body when not ``required``."""
    raw = await request.read()
    if not raw and not required:
        return {}
    if request.content_type != "application/json":
        raise Refused("Content-Type must be application/json")
    try:
        data = json.loads(raw)
    except ValueError:
        raise Refused("Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Refused("Request body must be a JSON object")
    return data


def bearer_key(request: web.Request) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, if there is one."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else None


_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data: http: https:; base-uri 'none'; form-action 'none'"
)

#: Headers on every answer of the server, its pages above all: nothing runs or loads from
#: elsewhere (images of sent media excepted), no page may frame it, no URL (which may carry
#: ``apiKey``) leaks in a Referer, and no answer is sniffed into HTML.
SECURITY_HEADERS = {
    "Content-Security-Policy": _CSP + "; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

#: The policy of a page made for another site's ``<iframe>`` (the live QR page, which has
#: nothing to click): the same, but any page may frame it.
FRAMEABLE_PAGE_CSP = _CSP


#: Methods that change nothing; every other one may, so another site may not send it.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: ``Sec-Fetch-Site`` values of a request made by the sandbox's own page or typed by a person.
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def _split_authority(authority: str) -> tuple[str, int | None] | None:
    """``host[:port]`` or ``[v6][:port]`` as (lower-case host, brackets and a final dot
    removed; port, None when absent); None when it is neither."""
    text = authority.strip().lower()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        has_port, port = bool(rest), rest[1:]
    else:
        host, colon, port = text.partition(":")
        has_port = bool(colon)
    if not host or (has_port and not port.isdigit()):
        return None
    return host.removesuffix("."), int(port) if has_port else None


class SiteGuard:
    """Keeps other web pages from driving a sandbox on this machine.

    - **DNS rebinding**: a request whose ``Host`` is not an address of the sandbox (a loopback
      name or the bound host, with its port, or one of ``allowed_hosts``: ``name`` on that
      port, or ``name:port`` as a port mapping shows it) gets 421. A page on
      ``evil.example`` whose name is made to resolve to 127.0.0.1 sends its own name.
      Bound to a wildcard (``0.0.0.0``, ``::``), any IP address is one of the sandbox's:
      an address cannot be rebound.
    - **Cross-site requests** (CSRF): a request that may change something (any method but GET,
      HEAD, OPTIONS), and the event stream (each holds a slot), gets 403 when it carries an
      ``Origin`` that is not the sandbox's or a ``Sec-Fetch-Site`` other than ``same-origin``
      or ``none``. Browsers send them on every such request; programs (the client, the CLI)
      send neither, and have no need: they are not a page someone else wrote.

    There is no anti-CSRF token: what it would add is what ``Origin`` already proves on every
    browser that runs scripts, and the client and CLI would have to learn one.
    """

    def __init__(
        self,
        bound_host: str,
        port: Callable[[], int],
        *,
        stats: Counter[str],
        allowed_hosts: Iterable[str] = (),
        guarded_reads: Callable[[str], bool] = lambda path: False,
    ) -> None:
        bound = bound_host.strip("[]").lower()
        self._wildcard = bound in _WILDCARDS
        self._names = _LOOPBACK_NAMES | {bound}
        # ``name`` (on the bound port) or ``name:port`` (as a port mapping shows it).
        self._extra: list[tuple[str, int | None]] = []
        for allowed in allowed_hosts:
            split = _split_authority(allowed)
            if split is None:
                raise ValueError(f"allowed_hosts: {allowed!r} is not a host name[:port]")
            self._extra.append(split)
        if self._wildcard:
            self._names |= {socket.gethostname().lower()}
        self._port = port
        self._stats = stats
        self._guarded_reads = guarded_reads

    def is_own(self, authority: str) -> bool:
        """Whether ``host[:port]`` names this sandbox."""
        split = _split_authority(authority)
        if split is None:
            return False
        host, port = split[0], split[1] or 80
        bound = self._port()
        if any(host == name and port == (given or bound) for name, given in self._extra):
            return True
        return port == bound and (host in self._names or (self._wildcard and _is_ip(host)))

    def refusal(self, request: web.Request) -> web.Response | None:
        """The answer refusing ``request``; None when it may be served."""
        host = request.headers.get(hdrs.HOST)
        if host is not None and not self.is_own(host):
            self._stats["refused.host"] += 1
            return error_response(
                421,
                f"This sandbox does not answer for Host {host!r}: use the address it printed "
                f"(http://127.0.0.1:{self._port()}), or let it answer for that name "
                "(wachat sandbox --allow-host NAME[:PORT]; FakeWachat(allowed_hosts=[...]))",
            )
        if request.method in _SAFE_METHODS and not self._guarded_reads(request.path):
            return None
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and not self._is_own_origin(origin):
            self._stats["refused.cross_site"] += 1
            return error_response(
                403, f"Refused: a page of another site ({origin}) may not drive this sandbox"
            )
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site.lower() not in _OWN_FETCH_SITES:
            self._stats["refused.cross_site"] += 1
            return error_response(
                403, f"Refused: a {site} request may not drive this sandbox (only its own pages)"
            )
        return None

    def _is_own_origin(self, origin: str) -> bool:
        scheme, sep, authority = origin.partition("://")
        return bool(sep) and scheme.lower() == "http" and self.is_own(authority)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # ``is None``, not ``or``: an aiohttp < 3.11 response is a mapping, false when empty.
        refused = self.refusal(request)
        return await handler(request) if refused is None else refused

    @staticmethod
    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        """An ``on_response_prepare`` signal: :data:`SECURITY_HEADERS` on every answer."""
        for name, header in SECURITY_HEADERS.items():
            response.headers.setdefault(name, header)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
