"""The client a command talks through, from the global options: the account's Wachat, or with
``--sandbox`` a fake Wachat started inside this command (it forgets everything at exit)."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
from collections.abc import AsyncIterator

from .._config import API_KEY_ENV
from ..client import AsyncWachat
from .outcome import CliError


def sandbox_key() -> str:
    """A fresh key for a sandbox: it accepts only that one."""
    return "sandbox-" + secrets.token_hex(12)


@contextlib.asynccontextmanager
async def connect(args: argparse.Namespace) -> AsyncIterator[AsyncWachat]:
    if not args.sandbox:
        if not (args.api_key or os.environ.get(API_KEY_ENV, "").strip()):
            raise CliError(
                f"no API key: pass --api-key or set ${API_KEY_ENV} (or try the sandbox: "
                "--sandbox, or `wachat sandbox`)"
            )
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
