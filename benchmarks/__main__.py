"""``python -m benchmarks`` (or ``nox -s bench``): every case in one run, interleaved, as ratios.

The server runs in its own process on one core, each client case in a fresh process on the
other (so peak RSS is per case). Rounds interleave the cases (A B C A B C ...) so machine drift
cancels; each figure is the median over rounds. Ratios are against raw aiohttp with one shared
session at the same concurrency (the floor). Writes ``results.json`` and the table in README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FLOOR = "raw_aiohttp"

SEQUENTIAL = [
    "raw_aiohttp",
    "AsyncWachat",
    "Wachat",
    "httpx.AsyncClient",
    "requests.Session",
    "aiohttp_session_per_request",
]
CONCURRENT = [
    "raw_aiohttp",
    "AsyncWachat",
    "AsyncWachat[speedups]",
    "create_many",
    "Wachat",
    "httpx.AsyncClient",
    "aiohttp_session_per_request",
]


# Counted with valgrind as well (each costs two ~20 s runs).
INSTRUCTIONS_CONCURRENT = ["raw_aiohttp", "AsyncWachat", "create_many"]
INSTRUCTIONS_SEQUENTIAL = ["raw_aiohttp", "AsyncWachat", "Wachat", "requests.Session"]


def run_case(case: str, n: int, concurrency: int, base_url: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.cases", case, str(n), str(concurrency), base_url],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def instructions(case: str, n: int, concurrency: int, base_url: str) -> int:
    """Instructions the client process executes, counted by valgrind's callgrind: the same
    for the same work whatever else the machine is doing (unlike CPU seconds on a shared VM)."""
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


def instructions_per_request(cases: list[str], concurrency: int, base_url: str) -> dict[str, float]:
    """(I(N2) - I(N1)) / (N2 - N1): startup, imports and warm-up cancel out."""
    small, large = 200, 600
    return {
        case: (
            instructions(case, large, concurrency, base_url)
            - instructions(case, small, concurrency, base_url)
        )
        / (large - small)
        for case in cases
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    n = runs[0]["n"]
    wall = statistics.median(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    return {
        "case": runs[0]["case"],
        "concurrency": runs[0]["concurrency"],
        "n": n,
        "rounds": len(runs),
        "wall_s": wall,
        "rps": n / wall,
        "cpu_us_per_request": cpu / n * 1e6,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }


def converter_micro() -> dict[str, Any]:
    """Structuring one create response into models, against the standard json.loads alone."""
    from wachat_async import CreatedInstance, _decode, _json

    body = _json.dumps(
        {
            "success": True,
            "instance": {
                "id": 26,
                "instanceName": "jakarta_store",
                "displayName": "jakarta_store",
                "apiInstanceName": "t1_mq9r2jov_jakarta_store",
                "internalName": "t1_mq9r2jov_jakarta_store",
                "number": "628123456789",
                "integration": "WHATSAPP-BAILEYS",
            },
            "qrcode": {
                "pairingCode": "PKRFWHWE",
                "code": "2@" + "x" * 200,
                "base64": "data:image/png;base64," + "A" * 600,
                "imageUrl": "https://app.wachat.net/api/v1/instance/qr/image?instanceName=t1",
                "liveUrl": "https://app.wachat.net/api/v1/instance/qr/live?instanceName=t1",
                "count": 1,
            },
            "qrError": None,
        }
    )
    data = json.loads(body)
    number = 20000
    loads = min(timeit.repeat(lambda: json.loads(body), number=number, repeat=5)) / number
    structure = (
        min(
            timeit.repeat(lambda: _decode.structure(data, CreatedInstance), number=number, repeat=5)
        )
        / number
    )
    return {
        "json_loads_us": loads * 1e6,
        "structure_us": structure * 1e6,
        "structure_over_loads": structure / loads,
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
        "platform": platform.platform(),
        "pinning": "server and client on separate cores"
        if (os.cpu_count() or 1) > 1
        else "none (one core)",
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
        f"Python {results['machine']['python']}, aiohttp {results['machine']['aiohttp']}; "
        f"{results['machine']['pinning']}. Median of {results['rounds']} interleaved rounds.",
        "",
        "| case | concurrency | N | req/s | x floor | client CPU µs/req | x floor | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["cases"]:
        lines.append(
            f"| {row['case']} | {row['concurrency']} | {row['n']} | {row['rps']:.0f} | "
            f"{row['throughput_vs_floor']:.2f} | {row['cpu_us_per_request']:.0f} | "
            f"{row['cpu_vs_floor']:.2f} | {row['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        "Bulk: `create_many`, concurrency 64, RSS growth over the run (after warm-up):",
        "",
        "| specs | wall s | req/s | RSS growth MB |",
        "|---:|---:|---:|---:|",
    ]
    for row in results["bulk"]:
        lines.append(
            f"| {row['n']} | {row['wall_s']:.1f} | {row['n'] / row['wall_s']:.0f} | "
            f"{row['rss_growth_mb']:.1f} |"
        )
    if results["instructions"]:
        lines += [
            "",
            "Client instructions per request, counted by callgrind, (I(600) - I(200)) / 400 (they "
            "do not depend on CPU speed or a busy neighbour; at concurrency 64 they still move "
            "a few percent with how responses batch):",
            "",
            "| case | concurrency | instructions/req | x floor |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {row['case']} | {row['concurrency']} | {row['instructions']:,.0f} | "
            f"{row['vs_floor']:.3f} |"
            for row in results["instructions"]
        ]
    micro = results["converter"]
    lines += [
        "",
        f"Converter, one create response: `json.loads` {micro['json_loads_us']:.1f} µs, "
        f"structuring into models {micro['structure_us']:.1f} µs "
        f"({micro['structure_over_loads']:.2f}x the parse).",
    ]
    return "\n".join(lines)


def write_readme(text: str) -> None:
    readme = HERE / "README.md"
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    current = readme.read_text()
    if start in current:
        head, _, rest = current.partition(start)
        _, _, tail = rest.partition(end)
        readme.write_text(f"{head}{start}\n{text}\n{end}{tail}")
    else:
        readme.write_text(f"{current.rstrip()}\n\n{start}\n{text}\n{end}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=2000, help="requests per case at concurrency 64")
    parser.add_argument("--n-sequential", type=int, default=500)
    parser.add_argument("--bulk", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count client instructions per request with valgrind (slow, but immune to noise)",
    )
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert server.stdout is not None
    assert server.stdin is not None
    base_url = server.stdout.readline().strip()
    try:
        plan = [(c, 1, args.n_sequential) for c in SEQUENTIAL] + [
            (c, 64, args.n) for c in CONCURRENT
        ]
        runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for round_number in range(args.rounds):
            for case, concurrency, n in plan:  # interleaved: every case once per round
                runs.setdefault((case, concurrency), []).append(
                    run_case(case, n, concurrency, base_url)
                )
            print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
        bulk = [run_case("create_many", n, 64, base_url) for n in args.bulk]
        counted = []
        if args.instructions:
            for concurrency, names in ((64, INSTRUCTIONS_CONCURRENT), (1, INSTRUCTIONS_SEQUENTIAL)):
                per_request = instructions_per_request(names, concurrency, base_url)
                counted += [
                    {
                        "case": name,
                        "concurrency": concurrency,
                        "instructions": count,
                        "vs_floor": count / per_request[FLOOR],
                    }
                    for name, count in per_request.items()
                ]
    finally:
        server.stdin.close()
        server.wait(timeout=30)

    cases = []
    for (_case, concurrency), case_runs in runs.items():
        row = summarize(case_runs)
        # Each ratio is taken within a round (case and floor ran minutes apart at most), then
        # the median over rounds: drift between rounds cancels out.
        floor_runs = runs[(FLOOR, concurrency)]
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
        "converter": converter_micro(),
        "instructions": counted,
    }
    text = table(results)
    print(text)
    if not args.no_write:
        (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        write_readme(text)


if __name__ == "__main__":
    main()
