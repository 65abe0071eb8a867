"""``python -m benchmarks`` (or ``nox -s bench``): every case in one run, as ratios to the floor.

The server (canned answers) runs in its own process on one core, each client case in a fresh
process on the other (so peak RSS is per case). Timed rounds interleave the cases (A B C A B C
...) so machine drift cancels; each ratio is taken within a round and the median over rounds
is reported. The floor is raw aiohttp written idiomatically: one session with the auth and
accept headers as its defaults, ``session.post(url, json=body)``, ``await resp.json()``.

CPU seconds on a shared machine move by 30%; instruction counts (``--instructions``, callgrind,
(I(600) - I(200)) / 400 per request) are the figure that decides. Writes ``results.json`` and
the tables in README.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import timeit
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.server import CREATED, spawned

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FLOOR = "raw_aiohttp"

#: (case, op, concurrency) of the timed rounds.
TIMED = [
    *((case, "create", 1) for case in (
        "raw_aiohttp", "AsyncWachat", "Wachat", "httpx.AsyncClient", "requests.Session",
        "aiohttp_session_per_request",
    )),
    *((case, "create", 64) for case in (
        "raw_aiohttp", "AsyncWachat", "AsyncWachat[speedups]", "create_many", "Wachat",
        "httpx.AsyncClient", "aiohttp_session_per_request",
    )),
    *((case, "send", 64) for case in ("raw_aiohttp", "AsyncWachat", "send_many")),
]  # fmt: skip

#: (label, answer size, op, case, floor case, concurrency) of the instruction counts.
COUNTED = [
    ("create, minimal answer", "min", "create", "AsyncWachat", FLOOR, 64),
    ("create, 6 KB QR answer", "qr", "create", "AsyncWachat", FLOOR, 64),
    ("create, every documented field, minimal QR", "full", "create", "AsyncWachat", FLOOR, 64),
    ("create, every documented field, 6 KB QR", "full_qr", "create", "AsyncWachat", FLOOR, 64),
    ("state (a GET)", "min", "state", "AsyncWachat", FLOOR, 64),
    ("send_text", "min", "send", "AsyncWachat", FLOOR, 64),
    ("Wachat vs requests.Session, sequential", "min", "create", "Wachat", "requests.Session", 1),
    ("send_many (journal on) vs send_text", "min", "send", "send_many", "AsyncWachat", 64),
    (
        "send_many (no journal) vs send_text",
        "min",
        "send",
        "send_many[no journal]",
        "AsyncWachat",
        64,
    ),
]


def run_case(case: str, op: str, n: int, concurrency: int, base_url: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.cases", case, op, str(n), str(concurrency), base_url],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def instructions(case: str, op: str, n: int, concurrency: int, base_url: str) -> int:
    """Instructions the client process executes, counted by valgrind's callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/cg.out",
                sys.executable,
                "-m",
                "benchmarks.cases",
                case,
                op,
                str(n),
                str(concurrency),
                base_url,
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from callgrind: {out.stderr[-500:]}")
    return int(match.group(1))


def per_request(case: str, op: str, concurrency: int, base_url: str) -> float:
    """(I(600) - I(200)) / 400: startup, imports and warm-up cancel out."""
    small, large = 200, 600
    return (
        instructions(case, op, large, concurrency, base_url)
        - instructions(case, op, small, concurrency, base_url)
    ) / (large - small)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    n = runs[0]["n"]
    wall = statistics.median(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    return {
        "case": runs[0]["case"],
        "op": runs[0]["op"],
        "concurrency": runs[0]["concurrency"],
        "n": n,
        "rounds": len(runs),
        "rps": n / wall,
        "cpu_us_per_request": cpu / n * 1e6,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }


def converter_micro() -> dict[str, Any]:
    """Decoding one create answer into models, against the standard json.loads alone."""
    from wachat_async import CreatedInstance, _decode

    body = CREATED["qr"]
    data = json.loads(body)
    number = 20000
    loads = min(timeit.repeat(lambda: json.loads(body), number=number, repeat=5)) / number
    structure = (
        min(
            timeit.repeat(lambda: _decode.structure(data, CreatedInstance), number=number, repeat=5)
        )
        / number
    )
    return {"json_loads_us": loads * 1e6, "structure_us": structure * 1e6}


def pacing(root_url: str, base_url: str) -> dict[str, Any]:
    """A paced broadcast from two instances; intervals as the server saw them."""
    interval, jitter, per_instance = 0.2, 0.2, 30
    script = f"""
import asyncio
from wachat_async import AsyncWachat, Pace, SendSpec, TextMessage
from benchmarks.server import API_KEY

async def main():
    async with AsyncWachat(API_KEY, base_url={base_url!r}) as wa:
        specs = [SendSpec(instance=f"t1_pace_{{s}}", recipient=f"62811{{i:08d}}",
                          message=TextMessage("hi"))
                 for i in range({per_instance}) for s in "ab"]
        pace = Pace(interval={interval}, jitter={jitter})
        async for r in wa.messages.send_many(specs, campaign="pace", pace=pace):
            assert r.ok, r

asyncio.run(main())
"""
    urllib.request.urlopen(urllib.request.Request(f"{root_url}/stats/reset", method="POST"))
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
    with urllib.request.urlopen(f"{root_url}/stats/sends") as resp:
        sends = json.loads(resp.read())
    gaps: list[float] = sorted(
        later - earlier for times in sends.values() for earlier, later in itertools.pairwise(times)
    )

    def pct(p: float) -> float:
        return gaps[min(len(gaps) - 1, int(p / 100 * len(gaps)))]

    return {
        "interval": interval,
        "jitter": jitter,
        "instances": len(sends),
        "gaps": len(gaps),
        "p5": pct(5),
        "p50": pct(50),
        "p95": pct(95),
        "min": gaps[0],
        "max": gaps[-1],
    }


def machine() -> dict[str, Any]:
    import aiohttp

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
    }


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, aiohttp "
        f"{m['aiohttp']}; server and client on separate cores. Median of {results['rounds']} "
        "interleaved rounds.",
        "",
        "| case | op | concurrency | N | req/s | x floor | client CPU µs/req | x floor | "
        "peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["cases"]:
        lines.append(
            f"| {row['case']} | {row['op']} | {row['concurrency']} | {row['n']} | "
            f"{row['rps']:.0f} | {row['throughput_vs_floor']:.2f} | "
            f"{row['cpu_us_per_request']:.0f} | {row['cpu_vs_floor']:.2f} | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        "Bulk jobs, concurrency 64, RSS growth over the measured run (after a warm-up):",
        "",
        "| job | items | items/s | RSS growth MB |",
        "|---|---:|---:|---:|",
    ]
    for row in results["bulk"]:
        lines.append(
            f"| {row['case']} | {row['n']} | {row['n'] / row['wall_s']:.0f} | "
            f"{row['rss_growth_mb']:.1f} |"
        )
    p = results["pacing"]
    lines += [
        "",
        f"Pacing at the server: `Pace(interval={p['interval']}, jitter={p['jitter']})`, "
        f"{p['instances']} instances, {p['gaps']} intervals between one instance's sends: "
        f"p5 {p['p5']:.3f} s, p50 {p['p50']:.3f} s, p95 {p['p95']:.3f} s (min {p['min']:.3f}; "
        f"configured: at least {p['interval']}, at most {p['interval'] + p['jitter']} plus "
        "the round trip).",
    ]
    if results["instructions"]:
        lines += [
            "",
            "Client instructions per request, counted by callgrind, (I(600) - I(200)) / 400, "
            f"median of {results['instruction_repeats']} counts each:",
            "",
            "| what | concurrency | instructions/req | floor | floor instructions/req | ratio |",
            "|---|---:|---:|---|---:|---:|",
        ]
        lines += [
            f"| {row['label']} | {row['concurrency']} | {row['instructions']:,.0f} | "
            f"{row['floor']} | {row['floor_instructions']:,.0f} | {row['ratio']:.3f} |"
            for row in results["instructions"]
        ]
    micro = results["converter"]
    lines += [
        "",
        f"Decoding one create answer (6 KB QR): `json.loads` {micro['json_loads_us']:.1f} µs, "
        f"into models {micro['structure_us']:.1f} µs more.",
    ]
    return "\n".join(lines)


def write_readme(text: str) -> None:
    readme = HERE / "README.md"
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    current = readme.read_text()
    head, _, rest = current.partition(start)
    _, _, tail = rest.partition(end)
    readme.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=2000, help="requests per case at concurrency 64")
    parser.add_argument("--n-sequential", type=int, default=500)
    parser.add_argument("--bulk", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--broadcast", type=int, default=100_000, help="messages to broadcast")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="LABEL",
        help="count only the instruction rows whose label starts with one of these, and run "
        "nothing else (prints; writes nothing)",
    )
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="REPEATS",
        help="also count client instructions per request with valgrind, REPEATS times each",
    )
    args = parser.parse_args()

    with spawned(ROOT) as root:
        base = {size: f"{root}/{size}/api/v1" for size in CREATED}
        if args.only:
            for label, size, op, case, floor, concurrency in COUNTED:
                if label.startswith(tuple(args.only)):
                    count = max(args.instructions, 1)
                    mine = statistics.median(
                        per_request(case, op, concurrency, base[size]) for _ in range(count)
                    )
                    theirs = statistics.median(
                        per_request(floor, op, concurrency, base[size]) for _ in range(count)
                    )
                    print(
                        f"{label}: {mine:,.0f} vs {floor} {theirs:,.0f} instructions/req, "
                        f"{mine / theirs:.3f}x",
                        flush=True,
                    )
            return
        runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        for round_number in range(args.rounds):
            for case, op, concurrency in TIMED:
                n = args.n_sequential if concurrency == 1 else args.n
                runs.setdefault((case, op, concurrency), []).append(
                    run_case(case, op, n, concurrency, base["min"])
                )
            print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
        bulk = [run_case("create_many", "create", n, 64, base["min"]) for n in args.bulk]
        bulk.append(run_case("send_many", "send", args.broadcast, 64, base["min"]))
        paced = pacing(root, base["min"])
        counted = []
        for label, size, op, case, floor, concurrency in COUNTED[
            : len(COUNTED) if args.instructions else 0
        ]:
            mine = statistics.median(
                per_request(case, op, concurrency, base[size]) for _ in range(args.instructions)
            )
            theirs = statistics.median(
                per_request(floor, op, concurrency, base[size]) for _ in range(args.instructions)
            )
            counted.append(
                {
                    "label": label,
                    "case": case,
                    "floor": floor,
                    "concurrency": concurrency,
                    "instructions": mine,
                    "floor_instructions": theirs,
                    "ratio": mine / theirs,
                }
            )
            print(f"counted {label}: {mine / theirs:.3f}", file=sys.stderr)

    cases = []
    for (_case, op, concurrency), case_runs in runs.items():
        row = summarize(case_runs)
        floor_runs = runs[(FLOOR, op, concurrency)]
        # Each ratio within a round (case and floor minutes apart at most), then the median.
        row["throughput_vs_floor"] = statistics.median(
            f["wall_s"] / c["wall_s"] for c, f in zip(case_runs, floor_runs, strict=True)
        )
        row["cpu_vs_floor"] = statistics.median(
            c["cpu_s"] / f["cpu_s"] for c, f in zip(case_runs, floor_runs, strict=True)
        )
        cases.append(row)
    results = {
        "machine": machine(),
        "rounds": args.rounds,
        "cases": cases,
        "bulk": bulk,
        "pacing": paced,
        "converter": converter_micro(),
        "instructions": counted,
        "instruction_repeats": args.instructions,
    }
    text = table(results)
    print(text)
    if not args.no_write:
        (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        write_readme(text)


if __name__ == "__main__":
    main()
