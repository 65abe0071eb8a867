"""Docs that run: every Python block of README.md and examples/ is executed against the
sandbox, as a reader would paste it (the typecheck session also runs mypy --strict on them)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs import ROOT, example_files, python_blocks
from wachat_async.testing import FakeWachat

KEY = "docs-key"
BLOCKS = python_blocks()
EXAMPLES = example_files()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[FakeWachat]:
    # The quick start waits for a scan: a fake phone scans every new instance at once.
    with FakeWachat.in_thread(api_keys={KEY}, qr_pool=4, auto_scan=0.2) as server:
        yield server


def run(path: Path, sandbox: FakeWachat, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "WACHAT_API_KEY": KEY,
        "WACHAT_BASE_URL": sandbox.base_url,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
    }
    return subprocess.run(
        [sys.executable, *args, str(path)],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_readme_has_its_examples() -> None:
    assert len(BLOCKS) >= 8
    assert EXAMPLES["bot.py"] in BLOCKS  # the bot is shown whole, as it is tested


@pytest.mark.parametrize("number", range(len(BLOCKS)), ids=lambda n: f"block{n + 1}")
def test_every_readme_block_runs(number: int, sandbox: FakeWachat, tmp_path: Path) -> None:
    block = BLOCKS[number]
    if block in EXAMPLES.values():
        pytest.skip("an example file, run by its own test")
    if "def test_" in block:
        # A test for the reader's suite: run by pytest in a fresh folder with no configuration,
        # as a new project would (pytest-asyncio in its default strict mode).
        path = tmp_path / "test_readme.py"
        path.write_text(block)
        (tmp_path / "pytest.ini").write_text("[pytest]\n")
        done = run(path, sandbox, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    else:
        path = tmp_path / "block.py"
        path.write_text(block)
        done = run(path, sandbox)
    assert done.returncode == 0, f"block {number + 1} failed:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
