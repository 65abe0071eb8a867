"""One benchmark case per process run: ``python -m benchmarks.cases CASE N CONCURRENCY BASE_URL``.

Prints one JSON line: wall seconds, client CPU seconds (all threads), peak RSS, and RSS growth.
Every case does the same thing: N ``POST /instance/create`` calls with a JSON answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.server import API_KEY

HEADERS = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}


def rss_mb() -> float:
    """Current resident set size in MB (from /proc; peak comes from getrusage)."""
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


async def raw_aiohttp(n: int, concurrency: int, base: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def call(i: int) -> None:
            async with session.post(
                f"{base}/instance/create", json={"instanceName": f"r{i}"}, headers=HEADERS
            ) as resp:
                resp.raise_for_status()
                await resp.json()

        await gather_limited(n, concurrency, call)


async def aiohttp_session_per_request(n: int, concurrency: int, base: str) -> None:
    import aiohttp

    async def call(i: int) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{base}/instance/create", json={"instanceName": f"s{i}"}, headers=HEADERS
            ) as resp,
        ):
            resp.raise_for_status()
            await resp.json()

    await gather_limited(n, concurrency, call)


async def async_wachat(n: int, concurrency: int, base: str) -> None:
    from wachat_async import AsyncWachat

    async with AsyncWachat(API_KEY, base_url=base) as wa:
        await gather_limited(n, concurrency, lambda i: wa.instances.create(f"w{i}"))


async def create_many(n: int, concurrency: int, base: str) -> None:
    from wachat_async import AsyncWachat, CreateSpec

    async with AsyncWachat(API_KEY, base_url=base) as wa:
        specs = (CreateSpec(f"m{i}") for i in range(n))
        async for result in wa.instances.create_many(specs, concurrency=concurrency):
            if result.error is not None:
                raise result.error


async def httpx_async(n: int, concurrency: int, base: str) -> None:
    import httpx

    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def call(i: int) -> None:
            resp = await client.post(
                f"{base}/instance/create", json={"instanceName": f"h{i}"}, headers=HEADERS
            )
            resp.raise_for_status()
            resp.json()

        await gather_limited(n, concurrency, call)


def wachat_sync(n: int, concurrency: int, base: str) -> None:
    from wachat_async import Wachat

    with Wachat(API_KEY, base_url=base) as wa:
        if concurrency == 1:
            for i in range(n):
                wa.instances.create(f"y{i}")
        else:
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(lambda i: wa.instances.create(f"y{i}"), range(n)))


def requests_session(n: int, concurrency: int, base: str) -> None:
    import requests

    with requests.Session() as session:
        session.headers.update(HEADERS)
        for i in range(n):
            resp = session.post(f"{base}/instance/create", json={"instanceName": f"q{i}"})
            resp.raise_for_status()
            resp.json()


CASES: dict[str, Callable[[int, int, str], Any]] = {
    "raw_aiohttp": raw_aiohttp,
    "AsyncWachat": async_wachat,
    "AsyncWachat[speedups]": async_wachat,
    "create_many": create_many,
    "Wachat": wachat_sync,
    "httpx.AsyncClient": httpx_async,
    "requests.Session": requests_session,
    "aiohttp_session_per_request": aiohttp_session_per_request,
}


def main() -> None:
    name, n, concurrency, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    case = CASES[name]
    if "[speedups]" not in name:
        sys.modules["orjson"] = None  # type: ignore[assignment]  # the plain install's JSON

    def run(k: int) -> None:
        outcome = case(k, min(concurrency, k), base)
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
