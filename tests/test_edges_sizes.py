"""Every read is bounded: huge, endless, lying and compressed answers stop at the cap, raise
ResponseTooLargeError quickly, and memory never holds much more than the cap. An oversized 2xx
to a create is reconciled like any unreadable 2xx: the instance is found, never made twice."""

from __future__ import annotations

import asyncio
import functools
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.edges import KEY, Front, leaks, raw_server, read_request
from wachat_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncWachat,
    ResponseTooLargeError,
    ResponseValidationError,
    RetryPolicy,
    ServerError,
)
from wachat_async.testing import FakeWachat

CAP = 1_000_000
#: What a call may allocate beyond the cap: buffers, parsing, the fake server's own work.
SLACK = 4_000_000
CHUNK = b"x" * 65536
GARBAGE = f"{KEY} ".encode() * 1000
FAST = RetryPolicy(initial_backoff=0.01, max_backoff=0.02)


@pytest.fixture
async def fake() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys={KEY}, qr_pool=2) as server:
        yield server


def client(base_url: str, **options: Any) -> AsyncWachat:
    settings: dict[str, Any] = {
        "base_url": base_url,
        "max_response_bytes": CAP,
        "max_image_bytes": CAP,
        "timeout": 10.0,
        "settle_delay": 0.05,
    }
    settings.update(options)
    return AsyncWachat(KEY, **settings)


async def stream(
    request: web.Request,
    total: int | None,
    *,
    content_type: str = "application/json",
    status: int = 200,
    length: int | None = None,
    prefix: bytes = b'{"success": true, "pad": "',
) -> web.StreamResponse:
    """``total`` bytes (None: endless) of a JSON-looking body, written a chunk at a time."""
    response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
    if length is not None:
        response.content_length = length
    await response.prepare(request)
    sent = 0
    try:
        await response.write(prefix)
        while total is None or sent < total:
            await response.write(CHUNK)
            sent += len(CHUNK)
    except (ConnectionError, RuntimeError):
        pass  # the client stopped reading: that is the point
    return response


async def peak_while(work: Awaitable[Any]) -> tuple[Any, int]:
    """``work``'s outcome (result or exception) and the peak traced memory while it ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        try:
            outcome: Any = await work
        except Exception as exc:
            outcome = exc
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return outcome, peak


Body = Callable[[web.Request], Awaitable[web.StreamResponse]]

HUGE: dict[str, Body] = {
    "64MB_json": lambda r: stream(r, 64 * 1024 * 1024),
    "endless_chunked": lambda r: stream(r, None),
    "64MB_announced": lambda r: stream(r, 64 * 1024 * 1024, length=64 * 1024 * 1024 + 27),
}


@pytest.mark.parametrize("kind", sorted(HUGE))
async def test_huge_json_success_stops_at_the_cap(fake: FakeWachat, kind: str) -> None:
    async def script(request: web.Request, body: bytes) -> web.StreamResponse:
        return await HUGE[kind](request)

    async with Front(fake, script) as api, client(api.base_url) as wa:
        error, peak = await peak_while(asyncio.wait_for(wa.instances.list(), 30))
    assert isinstance(error, ResponseTooLargeError), error
    assert isinstance(error, ResponseValidationError)
    assert error.limit == CAP
    assert "max_response_bytes" in str(error)
    assert peak < CAP + SLACK, peak
    assert api.hits["GET /instance/list"] == 1  # a read that is too large is not retried


@pytest.mark.parametrize("size", [50 * 1024 * 1024, None])
async def test_huge_image_stops_at_the_image_cap(fake: FakeWachat, size: int | None) -> None:
    async def script(request: web.Request, body: bytes) -> web.StreamResponse:
        return await stream(request, size, content_type="image/png", prefix=b"\x89PNG\r\n\x1a\n")

    async with Front(fake, script) as api, client(api.base_url, max_image_bytes=CAP // 2) as wa:
        error, peak = await peak_while(wa.instances.qr_image("t1_x_shop"))
    assert isinstance(error, ResponseTooLargeError), error
    assert error.limit == CAP // 2
    assert "max_image_bytes" in str(error)
    assert error.body.startswith("<")  # an image is described, not quoted
    assert peak < CAP + SLACK, peak


async def test_huge_error_body_is_capped_too(fake: FakeWachat) -> None:
    async def script(request: web.Request, body: bytes) -> web.StreamResponse:
        return await stream(request, None, status=500, prefix=b'{"error": "')

    async with Front(fake, script) as api, client(api.base_url, max_retries=0) as wa:
        error, peak = await peak_while(wa.instances.list())
    assert isinstance(error, ServerError), error
    assert len(error.body) <= 8192 + 1
    assert peak < CAP + SLACK, peak


@pytest.mark.parametrize("announced", [10, 1000])
async def test_content_length_that_lies_short_is_a_lost_connection(announced: int) -> None:
    """Announces ``announced`` bytes, sends megabytes more: aiohttp reads what follows as the
    next answer and fails the connection. That is a lost connection (a read is retried), worded
    briefly though the server's garbage is megabytes long, and memory stays bounded."""
    requests = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        while True:
            await read_request(reader)
            requests += 1
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {announced}\r\n\r\n".encode()
                + b'{"instances": [], "success": true}'
            )
            for _ in range(100):  # 6 MB more, a chunk at a time
                writer.write(GARBAGE)
                await writer.drain()

    async with raw_server(handle) as base_url, client(base_url, retry_policy=FAST) as wa:
        error, peak = await peak_while(wa.instances.list())
    assert isinstance(error, APIConnectionError), error
    assert error.attempts == 3
    assert len(str(error)) < 1000
    assert not leaks(error, KEY)
    assert requests == 3
    assert peak < CAP + SLACK, peak


async def test_content_length_that_lies_long_times_out(fake: FakeWachat) -> None:
    done = asyncio.Event()

    async def script(request: web.Request, body: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 500_000
        await response.prepare(request)
        await response.write(b'{"success": true}')
        await done.wait()
        return response

    async with Front(fake, script) as api, client(api.base_url, timeout=0.3, max_retries=0) as wa:
        with pytest.raises(APITimeoutError):
            await wa.instances.list()
        done.set()


@functools.cache
def gzip_bomb(inflated: int = 100 * 1024 * 1024, wbits: int = 31) -> bytes:
    """A gzip (or, ``wbits=15``, zlib) body of a JSON object padded with ``inflated`` zeros
    (about 1000:1)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    parts = [packer.compress(b'{"success": true, "instances": [], "pad": "')]
    block = b"0" * (1024 * 1024)
    for _ in range(inflated // len(block)):
        parts.append(packer.compress(block))
    parts.append(packer.compress(b'"}'))
    parts.append(packer.flush())
    return b"".join(parts)


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate"])
@pytest.mark.parametrize("own_session", [False, True])
async def test_compressed_bomb_stops_at_the_cap(
    fake: FakeWachat, encoding: str, own_session: bool
) -> None:
    assert len(gzip_bomb()) < CAP  # small on the wire: only inflating it breaks the cap
    payload = gzip_bomb(wbits=15) if encoding == "deflate" else gzip_bomb()

    async def script(request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(
            body=payload,
            headers={"Content-Type": "application/json", "Content-Encoding": encoding},
        )

    async with Front(fake, script) as api:
        session = aiohttp.ClientSession() if own_session else None
        try:
            async with client(api.base_url, session=session) as wa:
                error, peak = await peak_while(wa.instances.list())
        finally:
            if session is not None:
                await session.close()
    assert isinstance(error, ResponseTooLargeError), error
    assert peak < CAP + SLACK + len(payload), peak


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_small_compressed_answer_is_read(fake: FakeWachat, encoding: str) -> None:
    """A server (or proxy) that compresses although asked not to still works."""
    async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
        await wa.instances.create("shop")

    async def script(request: web.Request, body: bytes) -> web.StreamResponse | None:
        if request.method != "GET":
            return None
        async with (
            aiohttp.ClientSession() as s,
            s.get(
                fake.base_url + "/instance/list", headers={"Authorization": f"Bearer {KEY}"}
            ) as r,
        ):
            plain = await r.read()
        packed = gzip.compress(plain) if encoding == "gzip" else zlib.compress(plain)
        return web.Response(
            body=packed,
            headers={"Content-Type": "application/json", "Content-Encoding": encoding},
        )

    async with Front(fake, script) as api, client(api.base_url) as wa:
        infos = await wa.instances.list()
    assert [i.instance_name for i in infos] == ["shop"]


async def test_unknown_encoding_is_a_validation_error(fake: FakeWachat) -> None:
    async def script(request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(
            body=b"\x00\x01garbage",
            headers={"Content-Type": "application/json", "Content-Encoding": "snappy"},
        )

    async with Front(fake, script) as api, client(api.base_url) as wa:
        with pytest.raises(ResponseValidationError) as caught:
            await wa.instances.list()
    assert "snappy" in str(caught.value)


@pytest.mark.parametrize("kind", ["64MB_json", "endless_chunked", "64MB_announced", "gzip_bomb"])
async def test_oversized_create_answer_is_reconciled(fake: FakeWachat, kind: str) -> None:
    async def script(request: web.Request, body: bytes) -> web.StreamResponse | None:
        if request.path != "/api/v1/instance/create":
            return None
        await api.forward(request, body)  # the instance is created ...
        if kind == "gzip_bomb":  # ... but the answer is more than the client reads
            return web.Response(
                status=201,
                body=gzip_bomb(),
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
        return await HUGE[kind](request)

    async with Front(fake, script) as api, client(api.base_url) as wa:
        created, peak = await peak_while(wa.instances.create("jakarta_store"))
    assert not isinstance(created, Exception), created
    assert created.reconciled
    assert created.instance.api_instance_name == fake.instance("jakarta_store").api_name
    assert fake.count_instances("jakarta_store") == 1
    assert api.hits["POST /instance/create"] == 1
    assert peak < CAP + SLACK + len(gzip_bomb()), peak
