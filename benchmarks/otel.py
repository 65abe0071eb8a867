"""``python -m benchmarks.otel``: what observing calls costs when nobody observes them.

Client instructions per ``instances.state`` call (sequential, against the benchmark server),
counted by callgrind as (I(600) - I(200)) / 400 so that start-up, imports and warm-up cancel,
median of ``--repeats`` counts, for:

- ``off``: OpenTelemetry as if not installed (the check at client build finds nothing): the
  executor has no observer, one None check per call;
- ``no_provider``: ``opentelemetry-api`` importable, no tracer provider configured (the API's
  proxy tracer): one attribute read per call;
- ``before`` (with ``--before REV``): the library at revision REV, without any of this;
- for scale, not for the target: ``hook`` (one plain ``on_response`` hook) and ``sdk`` (the
  SDK's TracerProvider with no exporter: every span built and ended).

Each child process builds its case (``run CASE N BASE_URL``) and makes N calls after 50 of
warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: A tree to import the library from instead of this checkout (``--before``).
TREE_ENV = "WACHAT_BENCH_TREE"
CASES = ("off", "no_provider", "hook", "sdk")


async def _calls(case: str, n: int, base_url: str) -> None:
    from benchmarks.server import API_KEY, API_NAME
    from wachat_async import AsyncWachat

    options: dict[str, Any] = {}
    if case == "off":  # (``before``, a tree without any of this, needs nothing)
        from wachat_async import _otel

        _otel._installed = False  # as if opentelemetry were not installed
    elif case == "hook":
        from wachat_async import Hooks

        options["hooks"] = Hooks(on_response=lambda event: None)
    elif case == "sdk":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())
    async with AsyncWachat(API_KEY, base_url=base_url, **options) as wa:
        for _ in range(50):
            await wa.instances.state(API_NAME)
        for _ in range(n):
            await wa.instances.state(API_NAME)


def child(case: str, n: int, base_url: str) -> None:
    tree = os.environ.get(TREE_ENV)
    if tree:
        sys.path.insert(0, tree)
    asyncio.run(_calls(case, n, base_url))


def instructions(case: str, n: int, base_url: str, tree: str | None) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in every count
    if tree:
        env[TREE_ENV] = tree
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/cg.out",
                sys.executable,
                "-m",
                "benchmarks.otel",
                "run",
                case,
                str(n),
                base_url,
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=env,
        )
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from callgrind: {out.stderr[-500:]}")
    return int(match.group(1))


def per_call(case: str, base_url: str, tree: str | None = None) -> float:
    return (instructions(case, 600, base_url, tree) - instructions(case, 200, base_url, tree)) / 400


def extract(revision: str, into: str) -> str:
    """The library as it was at ``revision``, unpacked into ``into``."""
    archive = subprocess.run(
        ["git", "archive", revision, "wachat_async"], capture_output=True, check=True, cwd=ROOT
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", metavar="REV", help="also measure the library at REV")
    args = parser.parse_args()
    from benchmarks.server import spawned

    with spawned(ROOT) as root:
        base_url = f"{root}/min/api/v1"
        with tempfile.TemporaryDirectory() as tmp:
            trees: dict[str, str | None] = dict.fromkeys(CASES)
            if args.before:
                trees = {"before": extract(args.before, tmp), **trees}
            counts = {
                case: statistics.median(per_call(case, base_url, tree) for _ in range(args.repeats))
                for case, tree in trees.items()
            }
    print("| case | instructions/call | vs off |")
    print("|---|---:|---:|")
    for case, count in counts.items():
        print(f"| {case} | {count:,.0f} | {count / counts['off']:.4f} |")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "run":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
