"""Sessions: tests (once per supported Python found here), lint, typecheck, bench.

python3 -m nox                 # tests + lint + typecheck
python3 -m nox -s bench        # benchmarks (writes benchmarks/results.json)

Each Python runs the whole suite once, and between them the dependency sets the project
promises: 3.11 on the lowest core versions pyproject.toml allows, 3.12 on the newest with the
speedups extra, 3.13 on the newest without it. The ``slow`` tests (real-time pacing) run in the
3.12 session only.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
# uv installs in seconds what pip takes minutes for (it comes with ``nox[uv]``); plain pip
# otherwise. Never a downloaded interpreter: the Pythons are the ones this machine has.
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.download_python = "never"

SUPPORTED = ("3.11", "3.12", "3.13")
TEST_DEPS = [
    "pytest>=8",
    "pytest-asyncio>=0.24",
    "pytest-timeout",
    "pytest-xdist",
    "hypothesis",
    "pyyaml",
    "jsonschema",
    "pillow",
    "zxing-cpp",
    # Spans (and metrics) exported in memory (tests/test_otel_*.py).
    "opentelemetry-api",
    "opentelemetry-sdk",
    # A test CA for the https API behind a recording proxy (tests/test_core_proxy.py).
    "trustme",
    # Drives the system chromium (Debian's package, installed by .ci/run) in the dev phone
    # tests; never `playwright install`: no browser is downloaded.
    "playwright",
    # The bots: RedisStorage (against a real redis-server) and the framework adapters, each
    # tested under its real server.
    "redis>=5",
    "starlette",
    "fastapi",
    "uvicorn",
    "flask",
    "django",
]

# What users would pick instead, measured against the client.
BENCH_DEPS = ["httpx", "requests", "orjson"]

# The lowest versions pyproject.toml allows for the core dependencies.
LOWEST = ["aiohttp==3.10.*", "attrs==23.1.*", "cattrs==24.1.*", "tenacity==8.4.*"]

# The suite spends much of its time waiting on loopback servers and subprocesses: a worker per
# core, and two even on one core to overlap the waits.
WORKERS = ["-n", str(max(2, os.cpu_count() or 1))]


def _runs(python: str) -> bool:
    """True when ``python3.X`` starts (a pyenv shim exists even for versions it does not enable)."""
    try:
        return (
            subprocess.run(
                [f"python{python}", "-c", "pass"], capture_output=True, timeout=30, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


PYTHONS = [v for v in SUPPORTED if _runs(v)] or [SUPPORTED[0]]

# What each Python's session installs, so that between them every promised set is tested.
DEPENDENCIES = {"3.11": "lowest", "3.12": "newest+speedups", "3.13": "newest"}


def _say_what_is_skipped(session: nox.Session) -> None:
    """nox quietly runs only the Pythons it finds: name the supported ones it did not."""
    skipped = [v for v in SUPPORTED if v not in PYTHONS]
    if not skipped:
        return
    how = (
        "enable them in pyenv: PYENV_VERSION=3.11.7:3.12.1:3.13.0 python3 -m nox "
        "(the versions `pyenv versions` lists)"
        if shutil.which("pyenv")
        else "put python3.X on PATH"
    )
    untested = ", ".join(f"{DEPENDENCIES[v]} (Python {v})" for v in skipped)
    session.warn(f"Not found here, so not tested: {untested}; {how}.")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    _say_what_is_skipped(session)
    dependencies = DEPENDENCIES[str(session.python)]
    if dependencies == "lowest":
        session.install(*LOWEST, *TEST_DEPS, "segno", "rich")
        session.install("--no-deps", "-e", ".")
    elif dependencies == "newest+speedups":
        session.install("-e", ".[testing,cli,speedups]", *TEST_DEPS)
    else:
        session.install("-e", ".[testing,cli]", *TEST_DEPS)
    # The real-time pacing tests once, not in every session.
    select = [] if dependencies == "newest+speedups" else ["-m", "not slow"]
    session.run("pytest", *WORKERS, *select, *session.posargs)


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS[0])
def typecheck(session: nox.Session) -> None:
    session.install(
        "-e",
        ".[testing,cli]",
        *TEST_DEPS,
        *BENCH_DEPS,
        "mypy",
        "types-jsonschema",
        "types-PyYAML",
        "types-requests",
    )
    session.run("mypy")
    # Every Python block of the README, as a reader would paste it.
    blocks = session.create_tmp()
    session.run("python", "-m", "tests.docs", blocks, silent=True)
    session.run("mypy", "--strict", blocks)


@nox.session(python=PYTHONS[0])
def bench(session: nox.Session) -> None:
    session.install("-e", ".[testing]", *BENCH_DEPS)
    session.run("python", "-m", "benchmarks", *session.posargs)
