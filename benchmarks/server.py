"""The benchmark server: FakeWachat in a process of its own, pinned to its own core.

Prints its base URL on stdout, then serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import os
import sys

from wachat_async.testing import FakeWachat

API_KEY = "bench-key"


async def serve() -> None:
    # A pool of pre-rendered QR codes: rendering one costs ~6 ms, which would make the server,
    # not the clients, the thing measured. Nothing is recorded, and codes never expire.
    async with FakeWachat(api_keys={API_KEY}, qr_pool=16, record=False, qr_ttl=float("inf")) as s:
        print(s.base_url, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # returns when the harness closes it


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    asyncio.run(serve())
