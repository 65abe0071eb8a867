"""Which proxy a client's requests go through, and which of its parts are secrets.

:func:`proxy_for` resolves it once per client: ``proxy=`` if given; else, with ``trust_env``,
the standard variables as curl, requests and urllib read them (``https_proxy``, then
``HTTPS_PROXY``, then ``all_proxy``/``ALL_PROXY`` for an https API; ``http_proxy``/
``HTTP_PROXY`` for an http one; lowercase first), unless ``NO_PROXY`` exempts the API's host.
A value without a scheme (``proxy.corp:3128``) is an http proxy, as curl and requests read it.
Only http(s) proxies are supported: any other scheme (``socks5://``...) is refused when the
client is built, naming the variable, as ``proxy=`` is.

A proxy URL's ``user:password@`` is a secret like the API key: :func:`proxy_secrets` lists its
spellings for the redactor, and every message here shows the URL with it replaced by ``***``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.request
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .errors import InvalidRequestError

if TYPE_CHECKING:
    from ._config import Settings

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: The variables naming a proxy for each scheme of the API's URL, in the order they are read
#: (each in lowercase, then uppercase).
_VARIABLES = {"https": ("https_proxy", "all_proxy"), "http": ("http_proxy", "all_proxy")}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def proxy_for(settings: Settings) -> str | None:
    """The proxy URL for ``settings.base_url``, or None to connect directly. Raises
    InvalidRequestError for a proxy variable that is not an http(s) URL."""
    if settings.proxy:
        return settings.proxy
    if not settings.trust_env:
        return None
    api = urlsplit(settings.base_url)
    host = (api.hostname or "").rstrip(".")
    port = api.port or _DEFAULT_PORTS[api.scheme]
    found = _from_environment(api.scheme)
    if found is None:
        return None
    variable, value = found
    no_proxy = _variable("no_proxy")
    if no_proxy is not None and bypasses(no_proxy[1], host, port):
        return None
    if urllib.request.proxy_bypass(host):  # also the system's exceptions (macOS, Windows)
        return None
    return checked_proxy(variable, value if "://" in value else f"http://{value}")


def _variable(name: str) -> tuple[str, str] | None:
    """The variable ``name`` or its uppercase twin, and its value, as urllib reads them: the
    lowercase one wins when it is set, even to nothing (which turns the other off)."""
    spellings = [name, name.upper()]
    if name == "http_proxy" and "REQUEST_METHOD" in os.environ:
        # A CGI script: HTTP_PROXY is then the client's ``Proxy:`` header (httpoxy).
        spellings.remove("HTTP_PROXY")
    for spelling in spellings:
        if spelling in os.environ:
            value = os.environ[spelling].strip()
            return (spelling, value) if value else None
    return None


def _from_environment(scheme: str) -> tuple[str, str] | None:
    """The variable naming the proxy for ``scheme`` and its value; else the system's proxy
    settings (macOS, Windows: urllib reads them when no variable is set)."""
    for name in _VARIABLES[scheme]:
        found = _variable(name)
        if found is not None:
            return found
    system = urllib.request.getproxies()
    value = system.get(scheme) or system.get("all")
    return ("the system's proxy settings", value) if value else None


def checked_proxy(where: str, url: str) -> str:
    """``url``, if it is an http(s) proxy URL; else InvalidRequestError naming ``where`` and
    showing the URL without its credentials."""
    problem = _problem(url)
    if problem is None:
        return url
    advice = "" if where == "proxy" else "; fix or unset it, or pass proxy=... or trust_env=False"
    raise InvalidRequestError(
        f"{where} must be an http(s) proxy URL, got {without_credentials(url)!r} "
        f"({problem}){advice}"
    )


def _problem(url: str) -> str | None:
    """What makes ``url`` unusable as a proxy URL (without quoting its credentials), or None."""
    if "://" not in url:
        return f"it has no scheme; an http proxy is written http://{without_credentials(url)}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when out of range
    except ValueError:
        return "its port is not a number from 0 to 65535, or its host is malformed"
    if parts.scheme.lower() not in ("http", "https"):
        return "only http:// and https:// proxies are supported"
    if not parts.hostname:
        return "it has no host"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "it contains spaces or control characters"
    return None


def without_credentials(url: str) -> str:
    """``url`` with any ``user:password@`` shown as ``***@``."""
    scheme, userinfo, rest = _credentials(url)
    return url if userinfo is None else f"{scheme}***@{rest}"


def proxy_secrets(url: str | None) -> tuple[str, ...]:
    """The credentials in a proxy URL, as written and decoded, whole and each part (a proxy
    echoes ``user:password`` in a 407, base64-encoded in ``Proxy-Authorization``); none for a
    URL without."""
    userinfo = _credentials(url or "")[1]
    if not userinfo:
        return ()
    user, _, password = userinfo.partition(":")
    spellings = {userinfo, user, password}
    spellings |= {unquote(s) for s in spellings}
    return tuple(sorted(s for s in spellings if s))


def _credentials(url: str) -> tuple[str, str | None, str]:
    """``url`` as its ``scheme://``, its userinfo (None without an ``@``) and the rest. All up
    to the last ``@`` counts as userinfo: a password with an unescaped ``/`` or ``#`` stays
    hidden although the URL is malformed."""
    match = _SCHEME.match(url)
    scheme = match.group() if match else ""
    userinfo, at, rest = url[len(scheme) :].rpartition("@")
    return (scheme, userinfo, rest) if at else (scheme, None, url[len(scheme) :])


def bypasses(no_proxy: str, host: str, port: int) -> bool:
    """Whether a ``NO_PROXY`` list exempts ``host`` on ``port``, as requests and urllib read
    one: ``*``; a name, which covers its subdomains (``example.com``, ``.example.com``,
    ``*.example.com``); an IP address or a CIDR network (``10.0.0.0/8``); any of them with a
    port (``api.example.com:443``, ``[::1]:8080``), which then must be the API's port (443 or 80
    when its URL gives none)."""
    host = host.lower().strip("[]").rstrip(".")
    address = _address(host)
    for entry in re.split(r"[,\s]+", no_proxy.lower()):
        if entry == "*":
            return True
        name, wanted = _entry_port(entry)
        if not name or (wanted is not None and wanted != port):
            continue
        if address is not None:
            if "/" in name:
                try:
                    if address in ipaddress.ip_network(name, strict=False):
                        return True
                except ValueError:
                    pass
                continue
            if _address(name) == address:
                return True
            continue
        name = name.removeprefix("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _entry_port(entry: str) -> tuple[str, int | None]:
    """A NO_PROXY entry's host and port (None when it names none): ``host:443``,
    ``[::1]:443``; an IPv6 address without brackets has no port."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else None
    host, colon, port = entry.rpartition(":")
    if colon and port.isdigit() and ":" not in host:
        return host, int(port)
    return entry, None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
