"""The client's identity headers and the user's ``default_headers`` merge by name, whatever its
letter case: a name given in another case replaces ours, it is never sent twice (servers answer
400 to a repeated User-Agent). Checked on the wire, where a repeated header cannot hide."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from tests.conftest import FAST_RETRY, KEY
from tests.test_core_proxy import front_address, header_lines, reserved_port
from wachat_async import AsyncWachat
from wachat_async.testing import FakeWachat


@contextlib.asynccontextmanager
async def relaying_front(
    fake: FakeWachat, sock: socket.socket, on_sent: Callable[[bytes], Awaitable[None]]
) -> AsyncIterator[str]:
    """A loopback relay to ``fake`` on ``sock`` (a port mapping the fake is told it answers
    for): ``on_sent`` sees each chunk the client sends before it is relayed (to record it,
    or hold it); yields the relay's base URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(fake.host, fake.port)

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, upstream: bool
        ) -> None:
            try:
                while data := await source.read(65536):
                    if upstream:
                        await on_sent(data)
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        finally:
            tasks.discard(task)

    server = await asyncio.start_server(relay, sock=sock)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/v1"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def recording_front(
    fake: FakeWachat, wire: bytearray, sock: socket.socket
) -> contextlib.AbstractAsyncContextManager[str]:
    """A relay to ``fake`` that keeps every byte the client sends in ``wire``."""

    async def record(data: bytes) -> None:
        wire.extend(data)

    return relaying_front(fake, sock, record)


@pytest.mark.parametrize("own_session", [False, True])
@pytest.mark.parametrize("name", ["user-agent", "USER-AGENT", "User-agent"])
async def test_a_user_agent_in_any_case_is_sent_once(own_session: bool, name: str) -> None:
    wire = bytearray()
    front = reserved_port()
    async with (
        FakeWachat(api_keys={KEY}, allowed_hosts=[front_address(front)]) as server,
        recording_front(server, wire, front) as base_url,
    ):
        session = aiohttp.ClientSession() if own_session else None
        try:
            async with AsyncWachat(
                KEY,
                base_url=base_url,
                retry_policy=FAST_RETRY,
                default_headers={name: "shop-bot/2", "x-tenant": "acme"},
                session=session,
            ) as wa:
                created = await wa.instances.create("shop")
                await wa.instances.qr_image(created.instance.api_instance_name)  # another Accept
                await wa.instances.list()
        finally:
            if session is not None:
                await session.close()
    assert len(server.requests) == 3
    assert header_lines(wire, "user-agent") == ["shop-bot/2"] * 3
    assert header_lines(wire, "x-tenant") == ["acme"] * 3
    assert header_lines(wire, "authorization") == [f"Bearer {KEY}"] * 3
