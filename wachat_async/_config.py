"""Client options: every one, with its default and its check, written once.

:class:`Settings` is the single source: ``AsyncWachat(...)`` and ``Wachat(...)`` take exactly
its fields as keyword arguments (their signatures are generated from it, for mypy and at run
time), ``with_options`` changes the ones in :class:`OptionChanges`, and the ``wachat`` command
reads its defaults from here. Bad values raise InvalidRequestError when a client is built.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

import attrs

from . import _validate as check
from ._observe import Hooks
from ._retry import RetryPolicy
from ._security import is_loopback_host, without_credentials
from .errors import InvalidRequestError

DEFAULT_BASE_URL = "https://app.wachat.net/api/v1"
API_KEY_ENV = "WACHAT_API_KEY"
BASE_URL_ENV = "WACHAT_BASE_URL"

MiB = 1024 * 1024


def _api_key(value: str | None) -> str:
    key = value if value is not None else os.environ.get(API_KEY_ENV)
    if not isinstance(key, str) or not key.strip():
        raise InvalidRequestError(
            f"No Wachat API key: pass api_key=... or set the {API_KEY_ENV} environment variable."
        )
    key = key.strip()
    if not key.isprintable():  # CR, LF and NUL included
        raise InvalidRequestError("api_key contains characters that cannot go in a header")
    return check.encodable("api_key", key)


def _base_url(value: str | None) -> str:
    if value is not None:
        # Given explicitly, an empty or odd value is a mistake: falling back to the production
        # API with the caller's key would be the worst reading of it.
        check.text("base_url", value)
    url = (value or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).strip().rstrip("/")
    parts = _url_parts("base_url", url)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidRequestError(
            "base_url must not carry a query, a fragment or credentials: the key goes in "
            "api_key, never in a URL"
        )
    return url


def _url_parts(field: str, url: str) -> SplitResult:
    """``url`` split, if it is a well-formed http(s) URL: a host, a valid port, no spaces or
    control characters (which would otherwise fail only when the first request is sent, as a
    network error)."""
    problem = None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when out of range
    except ValueError as exc:
        problem = str(exc)
    else:
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problem = "not an http:// or https:// URL with a host"
        elif any(c.isspace() or not c.isprintable() for c in url):
            problem = "it contains spaces or control characters"
    if problem is not None:
        shown = without_credentials(url)  # they may be the key: base_url never carries them
        raise InvalidRequestError(f"{field} must be an http(s) URL, got {shown!r} ({problem})")
    return parts


def checked_proxy(where: str, url: str) -> str:
    """``url``, if it is an http(s) proxy URL; else InvalidRequestError naming ``where`` and
    showing the URL without its credentials."""
    problem = _proxy_problem(url)
    if problem is None:
        return url
    advice = "" if where == "proxy" else "; fix or unset it, or pass proxy=... or trust_env=False"
    raise InvalidRequestError(
        f"{where} must be an http(s) proxy URL, got {without_credentials(url)!r} "
        f"({problem}){advice}"
    )


def _proxy_problem(url: str) -> str | None:
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


#: Headers the client writes per request (framing, routing, the key); a default cannot replace
#: them. Header names are compared in lowercase: HTTP does not tell ``user-agent`` from
#: ``User-Agent``, so neither do these checks.
_RESERVED_HEADERS = frozenset(
    {"authorization", "host", "content-length", "transfer-encoding", "connection"}
)
#: An HTTP field name (RFC 9110 ``token``).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _headers(value: Mapping[str, str] | None) -> Mapping[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"default_headers must be a mapping, got {type(value).__name__}")
    headers = dict(value)
    seen: dict[str, str] = {}
    for name, text in headers.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise InvalidRequestError("default_headers names and values must be strings")
        if any(c in name + text for c in "\r\n\x00"):
            raise InvalidRequestError(f"default_headers[{name!r}] contains a line break")
        if not _TOKEN.fullmatch(name):
            raise InvalidRequestError(
                f"default_headers: {name!r} is not a header name (letters, digits and "
                "!#$%&'*+-.^_`|~ only)"
            )
        lowered = name.lower()
        if lowered in seen:
            raise InvalidRequestError(
                f"default_headers sets {seen[lowered]!r} and {name!r}: header names ignore "
                "case, so they are one header; keep one"
            )
        seen[lowered] = name
        if lowered == "authorization":
            raise InvalidRequestError(
                "default_headers must not set Authorization: the client sends the api_key"
            )
        if lowered == "proxy-authorization":
            raise InvalidRequestError(
                "default_headers must not set Proxy-Authorization (every request would carry "
                "it to the API): put the credentials in the proxy URL, "
                "proxy='http://user:password@host:port'"
            )
        if lowered in _RESERVED_HEADERS:
            raise InvalidRequestError(
                f"default_headers must not set {name}: the client sets it for each request"
            )
        if any(not c.isprintable() and c != "\t" for c in text):
            raise InvalidRequestError(f"default_headers[{name!r}] contains control characters")
        check.encodable(f"default_headers[{name!r}]", text)
    return headers


def _policy(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, RetryPolicy):
        raise InvalidRequestError(f"retry_policy must be a RetryPolicy, got {value!r}")


def _proxy(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    checked_proxy("proxy", check.text("proxy", value).strip())


def _hooks(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, Hooks):
        raise InvalidRequestError(f"hooks must be a Hooks, got {type(value).__name__}")


@attrs.frozen
class Settings:
    """Everything a client needs to talk to Wachat. The API key is never part of ``repr``."""

    #: The account's API key; falls back to ``$WACHAT_API_KEY``.
    api_key: str = attrs.field(default=None, converter=_api_key, repr=False)
    #: Falls back to ``$WACHAT_BASE_URL``, then Wachat's own.
    base_url: str = attrs.field(default=None, converter=_base_url, kw_only=True)
    #: Seconds for one attempt, connect to last byte.
    timeout: float = attrs.field(
        default=30.0, validator=check.attribute(check.seconds), kw_only=True
    )
    #: Retries after the first attempt; None keeps the retry policy's (2).
    max_retries: int | None = attrs.field(
        default=None, validator=check.attribute(check.non_negative_int, optional=True), kw_only=True
    )
    #: Backoff, time budget and ``Retry-After`` cap; None for the defaults.
    retry_policy: RetryPolicy | None = attrs.field(default=None, validator=_policy, kw_only=True)
    #: Reconcile an ambiguous create through ``GET /instance/list`` instead of giving up.
    reconcile: bool = attrs.field(default=True, validator=check.attribute(check.flag), kw_only=True)
    #: Seconds to wait before concluding that an ambiguous create did not happen.
    settle_delay: float = attrs.field(
        default=3.0, validator=check.attribute(check.seconds_or_zero), kw_only=True
    )
    #: Seconds to get a new connection; a slow connect is "not sent" and always retried.
    connect_timeout: float = attrs.field(
        default=10.0, validator=check.attribute(check.seconds), kw_only=True
    )
    #: Connections kept open per client.
    pool_limit: int = attrs.field(
        default=100, validator=check.attribute(check.positive_int), kw_only=True
    )
    #: The most a JSON answer may weigh; reading stops there.
    max_response_bytes: int = attrs.field(
        default=16 * MiB, validator=check.attribute(check.positive_int), kw_only=True
    )
    #: The most an image (QR code, profile picture) may weigh; reading stops there.
    max_image_bytes: int = attrs.field(
        default=10 * MiB, validator=check.attribute(check.positive_int), kw_only=True
    )
    #: Headers sent with every request (not ``Authorization``).
    default_headers: Mapping[str, str] = attrs.field(
        default=None, converter=_headers, kw_only=True, eq=False, repr=False
    )
    #: An http(s) proxy for every request (``http://user:password@host:port``; its credentials
    #: are redacted like the key); None reads the environment (see ``trust_env``).
    proxy: str | None = attrs.field(default=None, validator=_proxy, kw_only=True, repr=False)
    #: When ``proxy`` is None, read it as curl and requests do: ``HTTPS_PROXY`` (or
    #: ``ALL_PROXY``) for an https API, ``HTTP_PROXY`` for an http one, ``host:port`` meaning
    #: ``http://host:port``, unless ``NO_PROXY`` names the API's host (with or without its
    #: port). A proxy there that is not http(s) (``socks5://``) is refused when the client is
    #: built.
    trust_env: bool = attrs.field(default=True, validator=check.attribute(check.flag), kw_only=True)
    #: Allow plain ``http://`` to a host that is not loopback (the key then travels in clear).
    allow_insecure_http: bool = attrs.field(
        default=False, validator=check.attribute(check.flag), kw_only=True
    )
    #: Callables that see every attempt, retry and reconciliation step (see :class:`Hooks`).
    hooks: Hooks | None = attrs.field(
        default=None, validator=_hooks, kw_only=True, eq=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme == "http" and not self.allow_insecure_http and not self.talks_to_loopback:
            raise InvalidRequestError(
                f"Refusing to send the API key over plain http to {parts.hostname}; use https, "
                "or pass allow_insecure_http=True if you really mean it."
            )

    @property
    def talks_to_loopback(self) -> bool:
        return is_loopback_host(urlsplit(self.base_url).hostname)

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy in force (``retry_policy`` with ``max_retries`` applied)."""
        return (self.retry_policy or RetryPolicy()).with_max_retries(self.max_retries)


@attrs.frozen(kw_only=True)
class OptionChanges:
    """What ``with_options`` may change on a client that shares its connection pool; None keeps
    the current value. (The key, base URL, proxy and headers belong to the pool.)"""

    timeout: float | None = None
    max_retries: int | None = None
    retry_policy: RetryPolicy | None = None
    reconcile: bool | None = None
    settle_delay: float | None = None
    connect_timeout: float | None = None
    max_response_bytes: int | None = None
    max_image_bytes: int | None = None
    #: Replaces the client's hooks (``Hooks()`` for none).
    hooks: Hooks | None = None

    def given(self) -> dict[str, Any]:
        """The changes asked for, as keyword arguments."""
        return {k: v for k, v in attrs.asdict(self, recurse=False).items() if v is not None}

    def then(self, later: OptionChanges) -> OptionChanges:
        """These changes, then ``later`` ones on top."""
        return attrs.evolve(self, **later.given())

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with these changes, checked as a new client's would be."""
        return attrs.evolve(settings, **self.given())


def options_of(settings: Settings) -> dict[str, Any]:
    """``settings`` as keyword arguments for a client: every option but the key."""
    return {
        f.name: getattr(settings, f.name) for f in attrs.fields(Settings) if f.name != "api_key"
    }


def call_timeout(value: float | None, default: float) -> float:
    """A per-call ``timeout=``: None means the client's."""
    if value is None:
        return default
    if type(value) is float and math.isfinite(value) and value > 0:
        return value
    return check.seconds("timeout", value)
