"""A client for a running sandbox's control endpoints (``/_sandbox``, see
:mod:`wachat_async.testing._control`): what a phone and a customer do, from another process.

The control root is derived from the API base URL the sandbox printed
(``http://127.0.0.1:PORT/api/v1`` -> ``http://127.0.0.1:PORT/_sandbox``). The API key, when
there is one, goes along as a bearer key (a sandbox bound beyond loopback asks for it), but
never over plain http to a host that is not loopback.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from .._config import API_KEY_ENV, BASE_URL_ENV
from .._security import Redactor, is_loopback_host
from ..testing import API_PREFIX, CONTROL_PREFIX
from .outcome import CliError, OperationFailed
from .output import candidates

#: The most a control answer may weigh (a delivery log can be long).
_MAX_ANSWER = 16 * 1024 * 1024


def control_root(base_url: str | None) -> str:
    """``.../_sandbox`` from a sandbox's API base URL (``--base-url`` or ``$WACHAT_BASE_URL``)."""
    url = (base_url or os.environ.get(BASE_URL_ENV) or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not url.endswith(API_PREFIX):
        raise CliError(
            "the sandbox commands act on a running `wachat sandbox`: pass its base URL "
            f"(http://127.0.0.1:PORT{API_PREFIX}, as it printed) with --base-url or "
            f"${BASE_URL_ENV}",
        )
    return url[: -len(API_PREFIX)] + CONTROL_PREFIX


class SandboxControl:
    """Calls to one sandbox's control endpoints; each answers a JSON object."""

    def __init__(self, base_url: str | None, api_key: str | None, timeout: float) -> None:
        self.root = control_root(base_url)
        key = api_key or os.environ.get(API_KEY_ENV)
        parts = urlsplit(self.root)
        if key and parts.scheme == "http" and not is_loopback_host(parts.hostname):
            key = None  # a bearer key never travels in clear; a remote sandbox will say 401
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        #: What the server says is quoted to the user: never with the key in it.
        self._redact = Redactor(key or "")
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def instance_call(
        self, method: str, name: str, action: str = "", body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``/instances/{name}/{action}``; ``name`` is an API name (or an unshared friendly one).
        Refused for a friendly name that several instances share, it lists them."""
        path = f"/instances/{quote(name, safe='')}" + (f"/{action}" if action else "")
        try:
            return await self.call(method, path, body)
        except OperationFailed:
            await self._refuse_shared_name(name)
            raise

    async def _refuse_shared_name(self, name: str) -> None:
        """Say which instances ``name`` could mean, when it is the friendly name of several."""
        listing = await self.call("GET", "/instances")
        views = [v for v in listing.get("instances") or [] if isinstance(v, dict)]
        if any(v.get("api_name") == name for v in views):
            return
        shared = [v for v in views if v.get("display_name") == name]
        if len(shared) > 1:
            raise CliError(
                f"{len(shared)} instances have the friendly name {name}: give the API name of one",
                hints=candidates(
                    (str(v.get("api_name")), v.get("state"), v.get("created_at")) for v in shared
                ),
            )

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        url = self.root + path
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.request(
                    method, url, json=body, headers=self._headers, allow_redirects=False
                ) as response,
            ):
                raw = await response.content.read(_MAX_ANSWER + 1)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            said = self._redact(str(exc))
            raise OperationFailed(
                f"no sandbox answers at {self.root} ({type(exc).__name__}: {said}); is "
                "`wachat sandbox` running there?",
                kind="SandboxUnreachable",
            ) from None
        return _answer(raw, status, method, path, self._redact)


def _answer(raw: bytes, status: int, method: str, path: str, redact: Redactor) -> dict[str, Any]:
    try:
        data = json.loads(raw) if len(raw) <= _MAX_ANSWER else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise OperationFailed(
            f"{status} from {method} {CONTROL_PREFIX}{path}: not a sandbox's answer",
            kind="SandboxError",
        )
    if status >= 400 or data.get("success") is False:
        raise OperationFailed(
            f"{status} {redact(str(data.get('error') or 'sandbox control refused'))} "
            f"({method} {CONTROL_PREFIX}{path})",
            kind="SandboxError",
        )
    return data
