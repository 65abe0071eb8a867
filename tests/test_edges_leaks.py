"""Secrets at the newest edges: a proxy the caller's own session carries, an environment proxy
in front of a plain-http loopback API, and the CLI's sandbox verbs quoting a server that echoes
the key."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import KEY, serving
from tests.test_cli_helpers import env, wachat
from wachat_async import AsyncWachat, WachatError
from wachat_async.testing import FakeWachat

PASSWORD = "hunter2hunter2"


async def refusing_proxy() -> tuple[asyncio.Server, str, list[bytes]]:
    """A proxy that answers every request 407, remembering what it was sent."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(65536))
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


@pytest.mark.skipif(
    "proxy" not in inspect.signature(aiohttp.ClientSession).parameters,
    reason="a session of its own proxy is new in aiohttp 3.11",
)
async def test_credentials_of_a_proxy_the_callers_session_carries_are_not_quoted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, address, _ = await refusing_proxy()
    caplog.set_level("DEBUG", logger="wachat_async")
    try:
        async with aiohttp.ClientSession(proxy=f"http://bob:{PASSWORD}@{address}") as session:
            wa = AsyncWachat(
                KEY, base_url="https://localhost:9/api/v1", max_retries=0, session=session
            )
            async with wa:
                with pytest.raises(WachatError) as caught:
                    await wa.instances.list()
    finally:
        server.close()
        await server.wait_closed()
    shown = f"{caught.value} {caught.value!r} {caught.value.args} {vars(caught.value)}"
    assert "407" in shown  # the refusal is there, its credentials are not
    assert PASSWORD not in shown
    assert PASSWORD not in caplog.text


@pytest.fixture
async def recording_http_proxy() -> AsyncIterator[tuple[str, list[bytes]]]:
    server, address, seen = await refusing_proxy()
    yield f"http://{address}", seen
    server.close()
    await server.wait_closed()


async def test_an_environment_proxy_never_carries_a_plain_http_loopback_call(
    server: FakeWachat,
    recording_http_proxy: tuple[str, list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy, seen = recording_http_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("ALL_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with AsyncWachat(KEY, base_url=server.base_url) as wa:
        assert await wa.instances.list() == []
    assert seen == []  # the key went to the API on this machine, not through the proxy
    assert len(server.requests) == 1


async def test_an_explicit_proxy_still_carries_a_plain_http_loopback_call(
    server: FakeWachat, recording_http_proxy: tuple[str, list[bytes]]
) -> None:
    proxy, seen = recording_http_proxy
    async with AsyncWachat(KEY, base_url=server.base_url, proxy=proxy, max_retries=0) as wa:
        with pytest.raises(WachatError):
            await wa.instances.list()
    assert len(seen) == 1  # asked for, so used


async def test_a_sandbox_verb_never_prints_a_key_the_server_echoes() -> None:
    key = "sk-live-SECRET-0123456789abcdef"

    async def echo(request: web.Request) -> web.Response:
        said = request.headers.get("Authorization", "").partition(" ")[2]
        return web.json_response({"success": False, "error": f"unknown key {said}"}, status=401)

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", echo)
    async with serving(app) as base:
        done = await asyncio.to_thread(
            wachat,
            "sandbox",
            "scan",
            "inst1",
            "--base-url",
            f"{base}/api/v1",
            environ=env(WACHAT_API_KEY=key),
        )
    assert done.code != 0
    assert "unknown key ***" in done.out + done.err
    assert key not in done.out + done.err
