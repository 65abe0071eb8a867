"""The provisioning journal belongs to one account, one base URL and one process; a damaged one
is refused before anything is sent; and a run killed mid-way, run again, creates every name
exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.edges import KEY, KEYS
from wachat_async import (
    AsyncWachat,
    CreateSpec,
    JournalError,
    JournalInUseError,
    JournalMismatchError,
    ProvisionResult,
)
from wachat_async.bulk.journal import Journal
from wachat_async.testing import FakeWachat, Fault

ROOT = pathlib.Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
async def fake() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys=set(KEYS), qr_pool=2) as server:
        yield server


async def provision(
    base_url: str, journal: pathlib.Path, names: list[str], key: str = KEY, **options: Any
) -> list[ProvisionResult]:
    async with AsyncWachat(key, base_url=base_url, settle_delay=0.2, **options) as wa:
        return [
            r
            async for r in wa.instances.create_many(
                [CreateSpec(n) for n in names], journal=journal, concurrency=4
            )
        ]


async def test_a_journal_refuses_another_account(fake: FakeWachat, tmp_path: pathlib.Path) -> None:
    journal = tmp_path / "j.db"
    assert all(r.ok for r in await provision(fake.base_url, journal, ["a", "b"]))
    sent = len(fake.requests)
    with pytest.raises(JournalMismatchError, match="another account") as caught:
        await provision(fake.base_url, journal, ["c"], key=KEYS[1])
    assert caught.value.path == str(journal)
    assert len(fake.requests) == sent  # nothing sent
    assert all(r.skipped for r in await provision(fake.base_url, journal, ["a", "b"]))


async def test_a_journal_refuses_another_base_url(fake: FakeWachat, tmp_path: pathlib.Path) -> None:
    journal = tmp_path / "j.db"
    await provision(fake.base_url, journal, ["a"])
    async with FakeWachat(api_keys={KEY}) as other:
        with pytest.raises(JournalMismatchError, match=other.base_url):
            await provision(other.base_url, journal, ["a"])
        assert not other.requests


HOLDER = """
import asyncio, sys
from wachat_async.bulk.journal import Journal

async def main():
    journal = await Journal.open(sys.argv[1], api_key=sys.argv[2], base_url=sys.argv[3])
    print("holding", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await journal.close()

asyncio.run(main())
"""


@pytest.fixture
def holder(fake: FakeWachat, tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A journal held open by another process."""
    journal = tmp_path / "held.db"
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(journal), KEY, fake.base_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=ENV,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stdin is not None
        assert process.stdout.readline().strip() == "holding"
        yield journal
        process.stdin.write("done\n")
        process.stdin.flush()
        process.wait(timeout=30)


async def test_a_journal_held_by_another_process_is_refused_at_once(
    fake: FakeWachat, holder: pathlib.Path
) -> None:
    with pytest.raises(JournalInUseError, match="in use"):
        await provision(fake.base_url, holder, ["a", "b"])
    assert not fake.requests
    with pytest.raises(JournalInUseError):
        await Journal.open(holder, api_key=KEY, base_url=fake.base_url)


@pytest.mark.parametrize(
    "damage",
    [
        "random_bytes",
        "truncated",
        "truncated_header",
        "zeroed_middle",
        "not_a_journal",
        "empty_dir",
    ],
)
async def test_a_damaged_journal_is_refused_before_anything_is_sent(
    fake: FakeWachat, tmp_path: pathlib.Path, damage: str
) -> None:
    journal = tmp_path / "j.db"
    names = [f"shop_{i}" for i in range(40)]
    if damage == "random_bytes":
        journal.write_bytes(os.urandom(50_000))
    elif damage == "not_a_journal":
        db = sqlite3.connect(journal)
        db.execute("CREATE TABLE provision (x INTEGER)")
        db.commit()
        db.close()
    elif damage == "empty_dir":
        journal.mkdir()
    else:
        await provision(fake.base_url, journal, names)
        db = sqlite3.connect(journal)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")  # a file on its own, without a -wal beside it
        db.close()
        data = journal.read_bytes()
        if damage == "truncated":
            journal.write_bytes(data[: len(data) // 2])
        elif damage == "truncated_header":
            journal.write_bytes(data[:60])
        else:
            middle = len(data) // 2
            journal.write_bytes(data[:middle] + b"\0" * 4096 + data[middle + 4096 :])
    created = fake.stats["created"]
    sent = len(fake.requests)
    with pytest.raises(JournalError) as caught:
        await provision(fake.base_url, journal, names)
    assert caught.value.path == str(journal)
    assert len(fake.requests) == sent
    assert fake.stats["created"] == created


async def test_a_damaged_page_deep_in_a_large_journal_is_found_at_open(
    fake: FakeWachat, tmp_path: pathlib.Path
) -> None:
    """The meta and schema pages are intact, so opening alone would succeed; the run would meet
    the damaged page only when it looks up some name, after sending others."""
    journal = tmp_path / "j.db"
    opened = await Journal.open(journal, api_key=KEY, base_url=fake.base_url)
    for i in range(0, 3000, 500):
        await asyncio.gather(
            *[
                opened.record_provision(f"old_{n:04d}", "done", api_instance_name=f"t1_{n}")
                for n in range(i, i + 500)
            ]
        )
    await opened.close()
    db = sqlite3.connect(journal)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    data = journal.read_bytes()
    page = len(data) // 4096 * 4096 * 2 // 3 // 4096 * 4096
    journal.write_bytes(data[:page] + bytes(range(256)) * 16 + data[page + 4096 :])
    with pytest.raises(JournalError, match="damaged"):
        await provision(fake.base_url, journal, [f"new_{i}" for i in range(20)])
    assert not fake.requests


async def test_a_journal_failing_mid_run_stops_the_run(
    fake: FakeWachat, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal that cannot be read or written (a full disk) is not one spec's failure: the
    run stops, instead of going on without the record that keeps creates exactly-once."""
    entry = Journal.provision_entry

    async def failing(self: Journal, instance_name: str) -> Any:
        if instance_name == "c":
            raise JournalError("journal failed (disk full)", path=str(self.path))
        return await entry(self, instance_name)

    monkeypatch.setattr(Journal, "provision_entry", failing)
    seen = []

    async def run() -> None:
        async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
            async for result in wa.instances.create_many(
                [CreateSpec(n) for n in "abcdef"], journal=tmp_path / "j.db", concurrency=1
            ):
                seen.append(result.instance_name)

    with pytest.raises(JournalError, match="disk full"):
        await run()
    assert seen == ["a", "b"]
    assert fake.stats["created"] == 2


@pytest.mark.parametrize(
    "where",
    [
        "no_such_dir/j.db",
        "a_file/j.db",
        "",
    ],
)
async def test_an_unopenable_journal_path_is_refused(
    fake: FakeWachat, tmp_path: pathlib.Path, where: str
) -> None:
    (tmp_path / "a_file").write_text("not a directory")
    with pytest.raises(JournalError):
        await provision(fake.base_url, tmp_path / where if where else tmp_path, ["a"])
    assert not fake.requests


def test_an_unwritable_journal_is_refused(tmp_path: pathlib.Path) -> None:
    """/dev/full accepts the open and fails every write: a JournalError, not an OSError."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")

    async def attempt() -> None:
        journal = await Journal.open("/dev/full", api_key=KEY, base_url="https://x.example/api")
        await journal.close()

    with pytest.raises(JournalError):
        asyncio.run(attempt())


RUNNER = """
import asyncio, sys
from wachat_async import AsyncWachat, CreateSpec

async def main():
    journal, base_url, key, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    async with AsyncWachat(key, base_url=base_url, timeout=30) as wa:
        specs = [CreateSpec(f"shop_{i:02d}") for i in range(count)]
        async for result in wa.instances.create_many(specs, journal=journal, concurrency=4):
            print(result.status, result.instance_name, flush=True)

asyncio.run(main())
"""


def test_a_run_killed_mid_way_then_run_again_creates_each_name_once(
    tmp_path: pathlib.Path,
) -> None:
    journal = tmp_path / "j.db"
    count = 24
    with FakeWachat.in_thread(api_keys={KEY}, qr_pool=2) as fake:
        fake.inject(Fault.slow(0.6), path="/instance/create", times=None)
        with subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(journal), fake.base_url, KEY, str(count)],
            stdout=subprocess.DEVNULL,
            env=ENV,
        ) as process:
            try:
                deadline = time.monotonic() + 60
                # Kill it once some creates are done and others have reached the server (their
                # rows were committed before they were sent) and are being processed.
                while (
                    fake.stats["created"] < 4
                    or fake.stats["requests POST /instance/create"] - fake.stats["created"] < 2
                ):
                    assert time.monotonic() < deadline, dict(fake.stats)
                    assert process.poll() is None, "the run ended before it could be killed"
                    time.sleep(0.01)
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        with contextlib.closing(sqlite3.connect(journal)) as db:
            states = dict(db.execute("SELECT instance_name, state FROM provision").fetchall())
        assert "in_flight" in states.values()  # on disk before the request went

        fake.clear_faults()
        results = asyncio.run(
            provision(fake.base_url, journal, [f"shop_{i:02d}" for i in range(count)], timeout=2.0)
        )
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        assert {r.status for r in results} <= {"skipped", "reconciled", "created"}
        for i in range(count):
            assert fake.count_instances(f"shop_{i:02d}") == 1, f"shop_{i:02d}"
        with contextlib.closing(sqlite3.connect(journal)) as db:
            states = dict(db.execute("SELECT instance_name, state FROM provision").fetchall())
        assert set(states.values()) == {"done"}
        assert len(states) == count
