"""The client a command talks through, from the global options: the account's Wachat, or with
``--sandbox`` a fake Wachat started inside this command (it forgets everything at exit)."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from .._config import API_KEY_ENV, BASE_URL_ENV
from .._security import is_loopback_host
from ..client import AsyncWachat
from .outcome import CliError


def sandbox_key() -> str:
    """A fresh key for a sandbox: it accepts only that one."""
    return "sandbox-" + secrets.token_hex(12)


def _refuse_plain_http(base_url: str | None) -> None:
    """The command never sends the key in clear beyond loopback, and has no option to: said
    here in its own words (the library's error names a Python argument)."""
    parts = urlsplit((base_url or "").strip())
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise CliError(
            f"refusing to send the API key over plain http to {parts.hostname}: give an "
            f"https:// --base-url (or ${BASE_URL_ENV}); plain http is for a sandbox on this "
            "machine (127.0.0.1) only"
        )


@contextlib.asynccontextmanager
async def connect(args: argparse.Namespace) -> AsyncIterator[AsyncWachat]:
    if not args.sandbox:
        if not (args.api_key or os.environ.get(API_KEY_ENV, "").strip()):
            raise CliError(
                f"no API key: pass --api-key or set ${API_KEY_ENV} (or try the sandbox: "
                "--sandbox, or `wachat sandbox`)"
            )
        _refuse_plain_http(args.base_url or os.environ.get(BASE_URL_ENV))
        async with AsyncWachat(args.api_key, base_url=args.base_url, timeout=args.timeout) as wa:
            yield wa
        return
    if args.base_url is not None:
        raise CliError("--sandbox runs its own server: leave out --base-url")
    from ..testing import FakeWachat

    key = sandbox_key()
    async with (
        FakeWachat(api_keys={key}) as server,
        AsyncWachat(key, base_url=server.base_url, timeout=args.timeout) as wa,
    ):
        yield wa
