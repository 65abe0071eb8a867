"""Shared fixtures: a fake Wachat server on loopback and clients pointed at it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from wachat_async import AsyncWachat, RetryPolicy
from wachat_async.testing import FakeWachat

KEY = "test-key-0123456789abcdef"

# A suite started as a background job (``cmd &`` in a script, some CI runners) inherits SIGINT
# ignored, and so would every child it spawns: the Ctrl-C tests would then test nothing. Python's
# own handler here also gives children the default disposition back (handlers reset at exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


#: Retries that keep their shape (full jitter, caps, Retry-After) but wait milliseconds.
def pytest_configure(config: pytest.Config) -> None:
    if "_retry_connection" not in getattr(aiohttp.ClientSession, "ATTRS", ()):
        # aiohttp 3.10 (the lowest-versions session) leaks the socket of a connection a proxy
        # hung up on during CONNECT: its own bug, reported when the garbage collector gets to
        # it (as the transport or as the socket), in whichever test runs then. Only those
        # reports are let pass, and only there: the newer sessions still fail on any leak.
        for leaked in ("<function _SelectorTransport.__del__", "<socket.socket"):
            config.addinivalue_line(
                "filterwarnings",
                f"ignore:Exception ignored in. {leaked}:pytest.PytestUnraisableExceptionWarning",
            )


FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, total_budget=30.0)


@pytest.fixture
async def server() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys={KEY}, qr_pool=4) as fake:
        yield fake


@pytest.fixture
async def wa(server: FakeWachat) -> AsyncIterator[AsyncWachat]:
    async with AsyncWachat(
        KEY, base_url=server.base_url, retry_policy=FAST_RETRY, settle_delay=0.1, timeout=5.0
    ) as client:
        yield client


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server for the session (``tests/redis_server.py``; skips without one)."""
    from tests.redis_server import redis_server

    with redis_server() as url:
        yield url


@pytest.fixture
def thread_server() -> Iterator[FakeWachat]:
    with FakeWachat.in_thread(api_keys={KEY}, qr_pool=4) as fake:
        yield fake


#: What ``-X dev`` (asyncio's debug mode) reports for every callback slower than 0.1 s: on a
#: loaded machine any callback can be, so it says nothing about the code under test.
_SLOW_CALLBACK = re.compile(r"^Executing <.*> took \d+\.\d+ seconds\n", re.M)


def without_slow_callback_reports(stderr: str) -> str:
    """``stderr`` of a ``-X dev`` run, less asyncio's slow-callback reports."""
    return _SLOW_CALLBACK.sub("", stderr)


async def no_other_tasks() -> list[asyncio.Task[object]]:
    """Tasks still pending besides the current one (after giving callbacks a turn)."""
    await asyncio.sleep(0)
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]


async def tasks_left_after_settling(seconds: float = 5.0) -> list[asyncio.Task[object]]:
    """Tasks still pending once closed connections had time to be noticed (a peer's server
    notices a closed keep-alive connection some loop turns later, sooner on newer aiohttp)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := await no_other_tasks()) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    return left


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port; yields ``http://127.0.0.1:<port>``."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
