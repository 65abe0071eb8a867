"""A pace is kept where the gateway counts it: at the server, even when a send is late there.

A front between the client and the fake server holds the first send's bytes before relaying
them (a loaded machine, a slow network): the next send must still reach the server at least
the interval after it, not the interval after the first was allowed to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator

import pytest

from tests.conftest import FAST_RETRY, KEY
from tests.test_core_headers import relaying_front
from tests.test_core_proxy import front_address, reserved_port
from wachat_async import AsyncWachat, BroadcastStatus, Pace, SendSpec, TextMessage
from wachat_async.testing import FakeWachat

INTERVAL = 0.2
#: The server's clock is the wall clock, the pacer's the monotonic one: they may drift apart
#: by a hair over a gap (a late send misses the interval by a whole delay, not by this).
CLOCKS = 0.002


@contextlib.asynccontextmanager
async def late_front(fake: FakeWachat, sock: socket.socket, delay: float) -> AsyncIterator[str]:
    """A loopback relay to ``fake`` that holds the first send's bytes for ``delay`` seconds
    before relaying them (and what follows on that connection); yields its base URL."""
    held = asyncio.Event()

    async def hold_the_first_send(data: bytes) -> None:
        if b"POST /api/v1/send/" in data and not held.is_set():
            held.set()
            await asyncio.sleep(delay)

    async with relaying_front(fake, sock, hold_the_first_send) as base_url:
        yield base_url
    assert held.is_set(), "no send went through the front"


@pytest.mark.parametrize(
    "delay", [0.75 * INTERVAL, 1.5 * INTERVAL], ids=["late-by-most-of-it", "late-by-more"]
)
async def test_a_send_late_at_the_server_still_gets_its_interval(delay: float) -> None:
    front = reserved_port()
    async with (
        FakeWachat(api_keys={KEY}, allowed_hosts=[front_address(front)]) as fake,
        late_front(fake, front, delay) as base_url,
        AsyncWachat(KEY, base_url=base_url, retry_policy=FAST_RETRY, timeout=5.0) as wa,
    ):
        instance = (await wa.instances.create("shop")).instance.api_instance_name
        fake.scan(instance)
        items = [
            SendSpec(instance=instance, recipient=f"6281{n:08d}", message=TextMessage("Hi"))
            for n in range(3)
        ]
        pace = Pace(interval=INTERVAL, jitter=0.0)
        results = [r async for r in wa.messages.send_many(items, campaign="late", pace=pace)]
    assert [r.status for r in results] == [BroadcastStatus.SENT] * 3
    times = fake.send_times(instance)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 2
    assert min(gaps) >= INTERVAL - CLOCKS
