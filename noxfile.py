"""Sessions: tests (each supported Python found here), tests_speedups, tests_lowest, lint,
typecheck, bench.

python3 -m nox                 # tests + lint + typecheck
python3 -m nox -s bench        # benchmarks (writes benchmarks/results.json)
"""

from __future__ import annotations

import subprocess

import nox

nox.options.sessions = ["tests", "tests_speedups", "tests_lowest", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

SUPPORTED = ("3.11", "3.12", "3.13")
TEST_DEPS = [
    "pytest>=8",
    "pytest-asyncio>=0.24",
    "pytest-timeout",
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


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    session.install("-e", ".[testing,cli]", *TEST_DEPS)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS[-1])
def tests_speedups(session: nox.Session) -> None:
    """The suite again with the speedups extra (orjson), on the newest Python."""
    session.install("-e", ".[testing,cli,speedups]", *TEST_DEPS)
    session.run("pytest", *session.posargs)


# The lowest versions pyproject.toml allows for the core dependencies.
LOWEST = ["aiohttp==3.10.*", "attrs==23.1.*", "cattrs==24.1.*", "tenacity==8.4.*"]


@nox.session(python=PYTHONS[0])
def tests_lowest(session: nox.Session) -> None:
    """The suite on the oldest core dependencies allowed (aiohttp 3.10 has quirks of its own)."""
    session.install(*LOWEST, *TEST_DEPS, "segno", "rich")
    session.install("--no-deps", "-e", ".")
    session.run("pytest", *session.posargs)


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
