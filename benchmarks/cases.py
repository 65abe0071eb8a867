"""One benchmark case per process: ``python -m benchmarks.cases CASE OP N CONCURRENCY BASE_URL``.

``OP`` is ``create``, ``state`` or ``send`` (``send_text``). Prints one JSON line: wall seconds,
client CPU seconds (all threads), peak RSS and RSS growth over the measured run. Every case
makes the same N requests after a warm-up.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.server import API_KEY, API_NAME

RECIPIENT = "628111222333"


def rss_mb() -> float:
    """Current resident set size in MB (from /proc; the peak comes from getrusage)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def gather_limited(n: int, concurrency: int, call: Callable[[int], Awaitable[Any]]) -> None:
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await call(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _request(op: str, i: int) -> tuple[str, str, dict[str, Any]]:
    """(method, path, json body or query) of the same request in every case."""
    if op == "create":
        return "POST", "/instance/create", {"instanceName": f"store_{i}"}
    if op == "state":
        return "GET", "/instance/state", {"instanceName": API_NAME}
    return (
        "POST",
        "/send/text",
        {"instanceName": API_NAME, "number": RECIPIENT, "type": "text", "message": f"hi {i}"},
    )


async def raw_aiohttp(n: int, concurrency: int, base: str, op: str) -> None:
    """The floor, written idiomatically: one session, auth and accept as its default headers."""
    import aiohttp

    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def call(i: int) -> None:
            method, path, data = _request(op, i)
            if method == "GET":
                async with session.get(f"{base}{path}", params=data) as resp:
                    resp.raise_for_status()
                    await resp.json()
            else:
                async with session.post(f"{base}{path}", json=data) as resp:
                    resp.raise_for_status()
                    await resp.json()

        await gather_limited(n, concurrency, call)


async def aiohttp_session_per_request(n: int, concurrency: int, base: str, op: str) -> None:
    """What an existing gateway client does: a new session for every request."""
    import aiohttp

    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}

    async def call(i: int) -> None:
        method, path, data = _request(op, i)
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.request(
                method,
                f"{base}{path}",
                params=data if method == "GET" else None,
                json=None if method == "GET" else data,
            ) as resp,
        ):
            resp.raise_for_status()
            await resp.json()

    await gather_limited(n, concurrency, call)


def _operation(wa: Any, op: str) -> Callable[[int], Awaitable[Any]]:
    if op == "create":
        return lambda i: wa.instances.create(f"store_{i}")
    if op == "state":
        return lambda i: wa.instances.state(API_NAME)
    return lambda i: wa.messages.send_text(API_NAME, RECIPIENT, f"hi {i}")


async def async_wachat(n: int, concurrency: int, base: str, op: str) -> None:
    from wachat_async import AsyncWachat

    async with AsyncWachat(API_KEY, base_url=base) as wa:
        await gather_limited(n, concurrency, _operation(wa, op))


async def create_many(n: int, concurrency: int, base: str, op: str) -> None:
    from wachat_async import AsyncWachat, CreateSpec

    async with AsyncWachat(API_KEY, base_url=base) as wa:
        specs = (CreateSpec(f"store_{i}") for i in range(n))
        async for result in wa.instances.create_many(specs, concurrency=concurrency):
            if result.error is not None:
                raise result.error


async def send_many(
    n: int, concurrency: int, base: str, op: str, *, journaled: bool = True
) -> None:
    """A broadcast with pacing off from one instance, with the journal on (or off)."""
    from wachat_async import AsyncWachat, Pace, SendSpec, TextMessage

    with tempfile.TemporaryDirectory() as tmp:
        async with AsyncWachat(API_KEY, base_url=base) as wa:
            specs = (
                SendSpec(instance=API_NAME, recipient=f"62811{i:08d}", message=TextMessage("hi"))
                for i in range(n)
            )
            stream = wa.messages.send_many(
                specs,
                campaign=f"bench-{time.monotonic_ns()}",
                pace=Pace.off(per_instance=concurrency),
                journal=f"{tmp}/journal.sqlite" if journaled else None,
            )
            async for result in stream:
                if not result.ok:
                    raise RuntimeError(f"{result.status}: {result.error}")


async def httpx_async(n: int, concurrency: int, base: str, op: str) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:

        async def call(i: int) -> None:
            method, path, data = _request(op, i)
            if method == "GET":
                resp = await client.get(f"{base}{path}", params=data)
            else:
                resp = await client.post(f"{base}{path}", json=data)
            resp.raise_for_status()
            resp.json()

        await gather_limited(n, concurrency, call)


def wachat_sync(n: int, concurrency: int, base: str, op: str) -> None:
    from wachat_async import Wachat

    with Wachat(API_KEY, base_url=base) as wa:
        call = _operation(wa, op)
        if concurrency == 1:
            for i in range(n):
                call(i)
        else:
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(call, range(n)))


def requests_session(n: int, concurrency: int, base: str, op: str) -> None:
    import requests

    with requests.Session() as session:
        session.headers.update({"Authorization": f"Bearer {API_KEY}"})
        for i in range(n):
            method, path, data = _request(op, i)
            if method == "GET":
                resp = session.get(f"{base}{path}", params=data)
            else:
                resp = session.post(f"{base}{path}", json=data)
            resp.raise_for_status()
            resp.json()


CASES: dict[str, Callable[[int, int, str, str], Any]] = {
    "raw_aiohttp": raw_aiohttp,
    "AsyncWachat": async_wachat,
    "AsyncWachat[speedups]": async_wachat,
    "create_many": create_many,
    "send_many": send_many,
    "send_many[no journal]": functools.partial(send_many, journaled=False),
    "Wachat": wachat_sync,
    "httpx.AsyncClient": httpx_async,
    "requests.Session": requests_session,
    "aiohttp_session_per_request": aiohttp_session_per_request,
}


def main() -> None:
    name, op, n, concurrency, base = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        int(sys.argv[4]),
        sys.argv[5],
    )
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    case = CASES[name]
    if "[speedups]" not in name:
        sys.modules["orjson"] = None  # type: ignore[assignment]  # the plain install's JSON

    def run(k: int) -> None:
        outcome = case(k, min(concurrency, k), base, op)
        if asyncio.iscoroutine(outcome):
            asyncio.run(outcome)

    run(min(50, n))  # warm up: imports, the connection pool, the server's code paths
    rss_before = rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    run(n)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        json.dumps(
            {
                "case": name,
                "op": op,
                "n": n,
                "concurrency": concurrency,
                "wall_s": wall,
                "cpu_s": cpu,
                "peak_rss_mb": peak_rss_mb(),
                "rss_growth_mb": peak_rss_mb() - rss_before,
            }
        )
    )


if __name__ == "__main__":
    main()
