"""create_many: streaming, bounded concurrency, rate limit, and a journal that never duplicates."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAST_RETRY, KEY
from wachat_async import (
    AsyncWachat,
    CreateSpec,
    InvalidRequestError,
    OutcomeUnknownError,
    ProvisionProgress,
    ProvisionResult,
    Wachat,
)
from wachat_async.bulk import Journal
from wachat_async.testing import FakeWachat, Fault


async def collect(wa: AsyncWachat, specs: object, **options: object) -> list[ProvisionResult]:
    return [r async for r in wa.instances.create_many(specs, **options)]  # type: ignore[arg-type]


async def test_results_stream_with_bounded_concurrency(wa: AsyncWachat, server: FakeWachat) -> None:
    seen: list[ProvisionProgress] = []
    specs = [CreateSpec(f"store_{i:02d}", number=f"62812345{i:04d}") for i in range(40)]
    results = await collect(wa, specs, concurrency=4, on_progress=seen.append)
    assert len(results) == 40
    assert all(r.ok and r.created is not None for r in results)
    assert sorted(r.index for r in results) == list(range(40))
    assert {r.instance_name for r in results} == {s.instance_name for s in specs}
    for result in results:
        assert result.created is not None
        assert server.instance(result.created.instance.api_instance_name).display_name == (
            result.instance_name
        )
    assert max(p.submitted - p.finished for p in seen) <= 4
    assert seen[-1] == ProvisionProgress(submitted=40, succeeded=40, failed=0, skipped=0)


async def test_input_is_read_lazily(wa: AsyncWachat) -> None:
    pulled = itertools.count()

    def endless() -> Iterator[CreateSpec]:
        for i in itertools.count():
            next(pulled)
            yield CreateSpec(f"lazy_{i}")

    stream = wa.instances.create_many(endless(), concurrency=8)
    first = [await anext(stream) for _ in range(10)]
    await stream.aclose()
    assert len(first) == 10
    assert next(pulled) <= 10 + 8 + 1  # never more than `concurrency` ahead


async def test_rate_limit_spaces_out_creates(wa: AsyncWachat) -> None:
    started = time.monotonic()
    await collect(wa, [CreateSpec(f"r{i}") for i in range(6)], concurrency=6, rate_limit=10)
    assert time.monotonic() - started >= 0.5


async def test_bad_specs_are_reported_and_the_rest_proceed(
    wa: AsyncWachat, server: FakeWachat
) -> None:
    results = await collect(
        wa,
        [
            {"instance_name": "good_1"},
            {"instance_name": "bad_number", "number": "62-abc"},
            {"number": "628123456789"},
            {"instance_name": "typo", "phone": "1"},
            CreateSpec("good_1"),
            CreateSpec("good_2", reject_calls="sometimes"),  # type: ignore[arg-type]
        ],
        concurrency=1,
    )
    by_index = {r.index: r for r in results}
    assert by_index[0].ok
    assert isinstance(by_index[1].error, InvalidRequestError)
    assert "digits" in str(by_index[1].error)
    assert "instance_name is required" in str(by_index[2].error)
    assert "phone" in str(by_index[3].error)
    # The same name again, even sequentially and without a journal: refused, by position.
    assert "appears twice in the input (first as spec 0)" in str(by_index[4].error)
    assert "reject_calls must be True or False" in str(by_index[5].error)
    assert server.count_instances("good_1") == 1
    assert server.count_instances("good_2") == 0


async def test_duplicate_names_in_flight_are_refused(wa: AsyncWachat, server: FakeWachat) -> None:
    results = await collect(wa, [CreateSpec("twin"), CreateSpec("twin")], concurrency=2)
    assert sorted(r.ok for r in results) == [False, True]
    assert server.count_instances("twin") == 1


async def test_journal_makes_a_rerun_skip_what_is_done(
    wa: AsyncWachat, server: FakeWachat, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    specs = [CreateSpec(f"j{i}", meta_token=None) for i in range(20)]
    first = await collect(wa, specs, concurrency=5, journal=journal)
    again = await collect(wa, specs, concurrency=5, journal=journal)
    assert all(r.ok and not r.skipped for r in first)
    assert all(r.skipped for r in again)
    assert {r.api_instance_name for r in again} == {r.api_instance_name for r in first}
    assert server.stats["created"] == 20
    assert KEY.encode() not in journal.read_bytes()


async def test_journal_reconciles_what_was_in_flight_when_the_run_died(
    wa: AsyncWachat, server: FakeWachat, tmp_path: Path
) -> None:
    path = tmp_path / "journal.sqlite"
    async with await Journal.open(path, api_key=KEY, base_url=wa.base_url) as log:
        # Sent, created, then the process died:
        await log.record_provision("landed", "in_flight", started_at=time.time())
        await wa.instances.create("landed")
        # Sent an hour ago, never reached the server:
        await log.record_provision("lost", "in_flight", started_at=time.time() - 3600)

    results = await collect(wa, [CreateSpec("landed"), CreateSpec("lost")], journal=path)
    by_name = {r.instance_name: r for r in results}
    landed = by_name["landed"].created
    assert landed is not None
    assert landed.reconciled
    assert landed.qrcode is not None  # fetched afresh for the PNG
    assert by_name["lost"].created is not None
    assert not by_name["lost"].created.reconciled
    assert server.count_instances("landed") == 1
    assert server.count_instances("lost") == 1
    async with await Journal.open(path, api_key=KEY, base_url=wa.base_url) as journal:
        assert {e.state for e in await journal.provision_entries()} == {"done"}


async def test_faults_leave_every_row_accounted_and_a_rerun_finishes(
    server: FakeWachat, tmp_path: Path
) -> None:
    server.chaos(
        0.3,
        [
            Fault.status(503),
            Fault.drop_after(),
            Fault.drop_before(),
            Fault.status(500),
            Fault.truncated(),
            Fault.malformed(),
        ],
        seed=7,
        path="/instance/create",
    )
    journal = tmp_path / "journal.sqlite"
    specs = [CreateSpec(f"f{i:03d}") for i in range(100)]
    async with AsyncWachat(
        KEY, base_url=server.base_url, retry_policy=FAST_RETRY, settle_delay=0.05, max_retries=1
    ) as wa:
        first = await collect(wa, specs, concurrency=10, journal=journal)
        assert len(first) == 100
        for result in first:
            held = server.count_instances(result.instance_name or "")
            if result.ok:
                assert held == 1
            elif not isinstance(result.error, OutcomeUnknownError):
                assert held == 0
        server.clear_faults()
        second = await collect(wa, specs, concurrency=10, journal=journal)
    assert all(r.ok for r in second)
    assert all(server.count_instances(s.instance_name) == 1 for s in specs)
    assert server.stats["created"] == 100


def test_the_blocking_client_iterates(thread_server: FakeWachat, tmp_path: Path) -> None:
    with Wachat(KEY, base_url=thread_server.base_url) as wa:
        results = list(
            wa.instances.create_many(
                (CreateSpec(f"s{i}") for i in range(12)), concurrency=3, journal=tmp_path / "j.db"
            )
        )
        first_two = wa.instances.create_many(
            [CreateSpec(f"t{i}") for i in range(50)], concurrency=2
        )
        assert next(first_two).ok
        first_two.close()  # type: ignore[attr-defined]
    assert len(results) == 12
    assert all(r.ok for r in results)
    assert len(thread_server.instances) < 12 + 50


async def test_concurrency_must_be_positive(wa: AsyncWachat) -> None:
    with pytest.raises(InvalidRequestError, match="concurrency"):
        await collect(wa, [CreateSpec("x")], concurrency=0)
    with pytest.raises(InvalidRequestError, match="rate_limit"):
        await collect(wa, [CreateSpec("x")], rate_limit=-1)
    await asyncio.sleep(0)
