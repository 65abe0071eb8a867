"""A closed dev phone tab frees its event stream at once, not at the next keep-alive: the
keep-alive is set to an hour here, so only noticing the closed connection can free a slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import KEY
from wachat_async.testing import FakeWachat
from wachat_async.testing._devphone import DevPhone

CAP = 4


@pytest.fixture
async def sandbox(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeWachat]:
    monkeypatch.setattr(DevPhone, "keepalive", 3600.0)  # never, within a test
    monkeypatch.setattr(DevPhone, "max_streams", CAP)
    async with FakeWachat(api_keys={KEY}) as server:
        yield server


async def open_raw_stream(server: FakeWachat) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    host = f"127.0.0.1:{server.port}".encode()
    writer.write(b"GET /_sandbox/events HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"text/event-stream" in head
    await reader.readuntil(b"\n\n")  # the snapshot
    return writer


async def streams_closed(server: FakeWachat) -> None:
    """Wait until the server holds no stream (a condition; the test's timeout bounds it)."""
    while server._changes.watchers:
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_closed_streams_free_their_slots_at_once(sandbox: FakeWachat, how: str) -> None:
    for _ in range(3):  # three rounds of a full cap: twelve tabs opened and closed
        writers = [await open_raw_stream(sandbox) for _ in range(CAP)]
        assert sandbox._changes.watchers == CAP
        for writer in writers:
            if how == "abort":
                writer.transport.abort()  # a killed browser: no FIN handshake
            else:
                writer.close()
                await writer.wait_closed()
        async with asyncio.timeout(10):  # an hour's keep-alive would not come in time
            await streams_closed(sandbox)
    # And the next tab is served.
    writer = await open_raw_stream(sandbox)
    writer.close()
    await writer.wait_closed()


async def test_an_aiohttp_reader_that_leaves_frees_its_slot(sandbox: FakeWachat) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(CAP + 2):
            async with http.get(sandbox.control_url + "/events") as resp:
                assert resp.status == 200
                await resp.content.readuntil(b"\n\n")
                resp.close()  # drops the connection
            async with asyncio.timeout(10):
                await streams_closed(sandbox)


async def test_a_stream_still_read_keeps_its_slot_and_gets_changes(sandbox: FakeWachat) -> None:
    """The watch forwards everything else: an open stream goes on as before."""
    async with aiohttp.ClientSession() as http, http.get(sandbox.control_url + "/events") as resp:
        await resp.content.readuntil(b"\n\n")
        async with aiohttp.ClientSession() as other:
            await other.post(
                sandbox.base_url + "/instance/create",
                json={"instanceName": "store"},
                headers={"Authorization": f"Bearer {KEY}"},
            )
        event = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 10)
        assert b"event: instance" in event
        assert b"store" in event
        assert sandbox._changes.watchers == 1
    async with asyncio.timeout(10):
        await streams_closed(sandbox)
