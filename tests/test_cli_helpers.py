"""What the wachat command tests share: running the command (in this process, as a separate
process with a pipe, or on a pseudo-terminal), a ``wachat sandbox`` process, CSV files.

(No tests here: pytest collects the file, finds none, and the others import from it.)
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from wachat_async import cli

ROOT = Path(__file__).resolve().parents[1]
#: SGR sequences (colours, bold): what rich may write on a terminal, and nothing else.
SGR = re.compile(r"\x1b\[[0-9;]*m")
#: Everything a terminal takes as a control sequence.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@attrs.frozen
class Done:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = json.loads(self.err)["error"]
        return error


def env(**extra: str) -> dict[str, str]:
    """The environment of a child ``wachat``: this checkout first on its path, no
    ``WACHAT_*`` or terminal settings inherited."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WACHAT_")
        and k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")
    }
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return base | {"PYTHONPATH": path, "PYTHONUNBUFFERED": "1"} | extra


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "wachat_async", *args]


def spawn(*args: str, environ: dict[str, str]) -> subprocess.Popen[str]:
    """``wachat ARGS`` started as a separate process, stdout and stderr on pipes."""
    return subprocess.Popen(
        command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
        cwd=ROOT,
    )


def wachat(*args: str, environ: dict[str, str] | None = None, timeout: float = 120) -> Done:
    """``wachat ARGS`` as a separate process, its output read through pipes."""
    done = subprocess.run(
        command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ or env(),
        cwd=ROOT,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def main(capsys: pytest.CaptureFixture[str], *args: str) -> Done:
    """``wachat ARGS`` in this process (stdout captured: not a terminal)."""
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return Done(code, captured.out, captured.err)


def on_terminal(*args: str, columns: int, environ: dict[str, str]) -> Done:
    """``wachat ARGS`` with stdout and stderr on a pseudo-terminal ``columns`` wide; the
    output with colours and cursor moves taken out."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        command(*args),
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=environ | {"COLUMNS": str(columns), "TERM": "xterm-256color"},
        cwd=ROOT,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif process.poll() is not None:
            break
    os.close(leader)
    code = process.wait(timeout=30)
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    return Done(code, ANSI.sub("", text), "")


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_manifest(folder: Path) -> list[dict[str, str]]:
    with (folder / "manifest.csv").open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def eventually(check: Callable[[], bool], timeout: float = 60) -> None:
    """Wait until ``check()`` holds (polling; generous, never asserted on)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@attrs.frozen
class Sandbox:
    """A ``wachat sandbox`` process, and what it printed."""

    process: subprocess.Popen[str]
    base_url: str
    api_key: str
    dev_phone_url: str
    control_url: str

    def env(self) -> dict[str, str]:
        """The environment that points a child ``wachat`` at this sandbox."""
        return env(WACHAT_BASE_URL=self.base_url, WACHAT_API_KEY=self.api_key)


@contextlib.contextmanager
def running_sandbox(*args: str) -> Iterator[Sandbox]:
    """``wachat --json sandbox ARGS`` in its own process, as another program would run it."""
    process = subprocess.Popen(
        command("--json", "sandbox", *args),
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=ROOT,
    )
    assert process.stdout is not None
    try:
        printed = json.loads(process.stdout.readline())
        yield Sandbox(process, **printed)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
        process.stdout.close()
