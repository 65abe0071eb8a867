"""Client settings: where to connect, with which key, and how patiently."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import attrs

from ._retry import RetryPolicy
from ._security import is_loopback_host
from .errors import InvalidRequestError

DEFAULT_BASE_URL = "https://app.wachat.net/api/v1"
API_KEY_ENV = "WACHAT_API_KEY"
BASE_URL_ENV = "WACHAT_BASE_URL"
REDACTED = "***"


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced."""
    return text.replace(secret, REDACTED) if secret and secret in text else text


@attrs.frozen
class Settings:
    """Everything a client needs to talk to Wachat. The API key is never part of ``repr``."""

    api_key: str = attrs.field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    #: Seconds for one attempt, connect to last byte.
    timeout: float = 30.0
    #: Seconds to get a connection (from the pool or a new one); a slow connect is "not sent".
    connect_timeout: float = 10.0
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    #: Reconcile an ambiguous create through ``GET /instance/list`` instead of giving up.
    reconcile: bool = True
    #: Seconds to wait before concluding that an ambiguous create did not happen.
    settle_delay: float = 3.0
    #: Connections kept per client.
    pool_limit: int = 100
    allow_insecure_http: bool = False

    @property
    def talks_to_loopback(self) -> bool:
        return is_loopback_host(urlsplit(self.base_url).hostname)


def resolve_settings(
    api_key: str | None,
    base_url: str | None,
    *,
    timeout: float,
    max_retries: int,
    allow_insecure_http: bool,
    retry: RetryPolicy | None = None,
    **extra: object,
) -> Settings:
    """Apply the environment fallbacks and check everything before a client exists."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if not key or not key.strip():
        raise InvalidRequestError(
            f"No Wachat API key: pass api_key=... or set the {API_KEY_ENV} environment variable."
        )
    url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(f"base_url must be an http(s) URL, got {url!r}")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback_host(parts.hostname):
        raise InvalidRequestError(
            f"Refusing to send the API key over plain http to {parts.hostname}; use https, "
            "or pass allow_insecure_http=True if you really mean it."
        )
    if timeout <= 0:
        raise InvalidRequestError(f"timeout must be positive, got {timeout!r}")
    if max_retries < 0:
        raise InvalidRequestError(f"max_retries must be >= 0, got {max_retries!r}")
    policy = attrs.evolve(retry or RetryPolicy(), max_retries=max_retries)
    return Settings(
        api_key=key.strip(),
        base_url=url,
        timeout=timeout,
        retry=policy,
        allow_insecure_http=allow_insecure_http,
        **extra,  # type: ignore[arg-type]
    )
