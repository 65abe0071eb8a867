"""Which proxy a client's requests go through.

:func:`proxy_for` resolves it once per client: ``proxy=`` if given; else, with ``trust_env``,
the standard variables as curl, requests and urllib read them (``https_proxy``, then
``HTTPS_PROXY``, then ``all_proxy``/``ALL_PROXY`` for an https API; ``http_proxy``/
``HTTP_PROXY`` for an http one; lowercase first), unless ``NO_PROXY`` exempts the API's host.
A value without a scheme (``proxy.corp:3128``) is an http proxy, as curl and requests read it.
Only http(s) proxies are supported: any other scheme (``socks5://``...) is refused when the
client is built, naming the variable, as ``proxy=`` is.

A proxy URL's ``user:password@`` is a secret like the API key: the transport gives it to the
redactor (:func:`~wachat_async._security.url_credentials`), and a refused URL is quoted with
it replaced by ``***``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.request
from urllib.parse import urlsplit

from ._config import Settings, checked_proxy
from ._security import is_loopback_host

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: The variables naming a proxy for each scheme of the API's URL, in the order they are read
#: (each in lowercase, then uppercase).
_VARIABLES = {"https": ("https_proxy", "all_proxy"), "http": ("http_proxy", "all_proxy")}


def proxy_for(settings: Settings) -> str | None:
    """The proxy URL for ``settings.base_url``, or None to connect directly. Raises
    InvalidRequestError for a proxy variable that is not an http(s) URL."""
    if settings.proxy:
        return settings.proxy
    if not settings.trust_env:
        return None
    api = urlsplit(settings.base_url)
    host = (api.hostname or "").rstrip(".")
    if api.scheme == "http" and is_loopback_host(host):
        # Plain http is allowed for loopback only because it never leaves the machine; an
        # environment proxy would carry it, key and all, in clear (``proxy=`` still may).
        return None
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
