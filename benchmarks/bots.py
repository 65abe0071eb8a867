"""``python -m benchmarks.bots``: events per second through the receiver with a bot's router (50
handlers, the match at the 50th) against the bare receiver (a handler that does nothing). Two
routers: 49 ``F.text`` misses (which the router merges into one lookup) and 49 ``F.regex``
misses (each one tested).

The receiver runs in a child process (``serve``) that exits once it has handled N events and
reports its own CPU seconds; the parent posts N signed ``messages.upsert`` deliveries (each a
new message id and customer, 32 at a time) over loopback. Rounds interleave the two cases and
the ratio is taken within a round, median over rounds. ``--instructions`` also counts the
child's instructions with callgrind, (I(600) - I(200)) / 400 per event, so start-up, imports
and warm-up cancel. The bot keeps the default MemoryStorage (dedupe, inbox, chat lock, state
load) in the path; handlers reply nothing (a send costs the same either way).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_bench"
HANDLERS = 50
CONCURRENCY = 32
CASES = ("bare_receiver", "router_50", "router_50_regex")


def _body(i: int) -> bytes:
    return json.dumps(
        {
            "event": "messages.upsert",
            "instance": "t1_bench000_store",
            "data": {
                "key": {
                    "remoteJid": f"62811{i:08d}@s.whatsapp.net",
                    "fromMe": False,
                    "id": f"M{i}",
                },
                "message": {"conversation": "order A-17"},
                "messageType": "conversation",
            },
        }
    ).encode()


def _headers(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Wachat-Timestamp": stamp,
        "X-Wachat-Signature": "sha256=" + mac,
        "X-Wachat-Event": "messages.upsert",
    }


# -- the child: the receiver under test ---------------------------------------------------------


async def serve(case: str, n: int) -> None:
    from aiohttp import web

    from wachat_async import AsyncWachat
    from wachat_async.bots import Bot, F, Message, Router
    from wachat_async.webhooks import WebhookEvent, WebhookReceiver

    handled = 0
    done = asyncio.Event()

    def count() -> None:
        nonlocal handled
        handled += 1
        if handled == n:
            done.set()

    if case == "bare_receiver":

        async def on_event(event: WebhookEvent) -> None:
            count()

        receiver = WebhookReceiver(SECRET, on_event)
    else:
        router = Router()
        for k in range(HANDLERS - 1):  # none of these match
            # F.text handlers in a row are one lookup; regular expressions are each tested.
            miss_filter = F.text(f"keyword{k}") if case == "router_50" else F.regex(f"^kw{k}$")

            @router.message(miss_filter)
            async def miss(message: Message) -> None:
                raise AssertionError("no match expected")

        @router.message(F.regex(r"^order [A-Z]-\d+$"))
        async def hit(message: Message) -> None:
            count()

        receiver = Bot(router, AsyncWachat("bench-key")).receiver(SECRET)
    runner = web.AppRunner(receiver.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    start = time.process_time()
    await done.wait()
    cpu = time.process_time() - start
    await runner.cleanup()
    print(json.dumps({"cpu": cpu}), flush=True)


# -- the parent: load and figures --------------------------------------------------------------


async def _load(port: int, n: int, offset: int) -> None:
    url = f"http://127.0.0.1:{port}/bench"
    queue = iter(range(offset, offset + n))
    async with aiohttp.ClientSession() as http:

        async def worker() -> None:
            for i in queue:
                body = _body(i)
                async with http.post(url, data=body, headers=_headers(body)) as resp:
                    assert resp.status == 200, resp.status
                    await resp.read()

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def _child(case: str, n: int, valgrind: Path | None) -> subprocess.Popen[str]:
    prefix = (
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={valgrind}"] if valgrind else []
    )
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "benchmarks.bots", "serve", case, str(n)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(case: str, n: int, valgrind: Path | None = None) -> tuple[float, str]:
    """Events per CPU second of the receiver process, and its stderr."""
    child = _child(case, n, valgrind)
    assert child.stdout is not None
    port = int(child.stdout.readline())
    asyncio.run(_load(port, n, offset=0))
    out, err = child.communicate(timeout=600)
    cpu = json.loads(out.strip().splitlines()[-1])["cpu"]
    return n / cpu, err


def instructions(case: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        _, err = run(case, n, valgrind=Path(tmp) / "cg.out")
    match = re.search(r"Collected : (\d+)", err)
    if match is None:
        raise RuntimeError(f"no instruction count from callgrind: {err[-500:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true")
    args = parser.parse_args()
    ratios: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {c: [] for c in CASES}
    for _ in range(args.rounds):
        round_rates = {case: run(case, args.events)[0] for case in CASES}
        for case, rate in round_rates.items():
            rates[case].append(rate)
        for case in CASES[1:]:
            ratios.setdefault(case, []).append(round_rates[case] / round_rates["bare_receiver"])
    result: dict[str, Any] = {
        "events_per_cpu_second": {c: round(statistics.median(r)) for c, r in rates.items()},
        "vs_bare": {c: round(statistics.median(r), 3) for c, r in ratios.items()},
    }
    if args.instructions:
        result["instructions_per_event"] = {
            case: round((instructions(case, 600) - instructions(case, 200)) / 400) for case in CASES
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        asyncio.run(serve(sys.argv[2], int(sys.argv[3])))
    else:
        main()
