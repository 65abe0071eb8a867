"""messages.send_many: paced per instance, journaled, never sending anything twice.

The sandbox records every send with its time, rate-limits per instance and, in strict mode,
disconnects an instance that bursts: the pacing is checked where it matters, at the server.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST_RETRY, KEY
from wachat_async import (
    AsyncWachat,
    BroadcastResult,
    BroadcastStatus,
    InvalidRequestError,
    Pace,
    RetryPolicy,
    SendSpec,
    TextMessage,
    Wachat,
)
from wachat_async.bulk import Journal, render_template
from wachat_async.testing import FakeWachat, Fault

FAST = Pace.off(per_instance=8)


@pytest.fixture
async def bulk_server() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys={KEY}, qr_pool=2) as fake:
        yield fake


@pytest.fixture
async def client(bulk_server: FakeWachat) -> AsyncIterator[AsyncWachat]:
    async with AsyncWachat(
        KEY, base_url=bulk_server.base_url, retry_policy=FAST_RETRY, timeout=5.0
    ) as wa:
        yield wa


async def connected(wa: AsyncWachat, server: FakeWachat, *names: str) -> list[str]:
    """Instances created and scanned; their API names."""
    api_names: list[str] = []
    for name in names:
        api = (await wa.instances.create(name)).instance.api_instance_name
        server.scan(api)
        api_names.append(api)
    return api_names


def recipients(count: int, start: int = 0) -> list[str]:
    return [f"6281{n:08d}" for n in range(start, start + count)]


def specs(instance: str, numbers: list[str], text: str = "Hello") -> list[SendSpec]:
    return [SendSpec(instance=instance, recipient=n, message=TextMessage(text)) for n in numbers]


async def run(wa: AsyncWachat, items: Any, **options: Any) -> list[BroadcastResult]:
    options.setdefault("campaign", "spring")
    options.setdefault("pace", FAST)
    return [r async for r in wa.messages.send_many(items, **options)]


def received(server: FakeWachat, instance: str) -> list[str]:
    return [m["body"]["number"] for m in server.sent_messages(instance)]


async def test_every_recipient_gets_one_message(
    client: AsyncWachat, bulk_server: FakeWachat
) -> None:
    a, b, c = await connected(client, bulk_server, "a", "b", "c")
    items = specs(a, recipients(10)) + specs(b, recipients(10)) + specs(c, recipients(10))
    results = await run(client, items)
    assert sorted(r.index for r in results) == list(range(30))
    assert {r.status for r in results} == {BroadcastStatus.SENT}
    for instance in (a, b, c):
        assert sorted(received(bulk_server, instance)) == recipients(10)
    ids = {m["id"] for i in (a, b, c) for m in bulk_server.sent_messages(i)}
    assert {r.message_id for r in results} == ids


async def test_pace_is_kept_per_instance_at_the_server(
    client: AsyncWachat, bulk_server: FakeWachat
) -> None:
    a, b = await connected(client, bulk_server, "a", "b")
    pace = Pace(interval=0.2, jitter=0.1, seed=7)
    await run(client, specs(a, recipients(5)) + specs(b, recipients(5)), pace=pace)
    for instance in (a, b):
        times = bulk_server.send_times(instance)
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert len(gaps) == 4
        assert min(gaps) >= 0.2 * 0.95  # never closer than the interval
    # The two instances send side by side, not one after the other.
    assert bulk_server.send_times(b)[0] < bulk_server.send_times(a)[-1]


async def test_warm_up_spaces_the_first_messages_more(
    client: AsyncWachat, bulk_server: FakeWachat
) -> None:
    (a,) = await connected(client, bulk_server, "a")
    pace = Pace(interval=0.05, jitter=0.0, warmup_messages=3, warmup_interval=0.4)
    await run(client, specs(a, recipients(5)), pace=pace)
    times = bulk_server.send_times(a)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert [round(pace.spacing(k), 3) for k in range(1, 5)] == [0.283, 0.167, 0.05, 0.05]
    for k, gap in enumerate(gaps, start=1):
        assert gap >= pace.spacing(k) * 0.95


async def test_bad_rows_repeats_and_opt_outs_are_reported_alone(
    client: AsyncWachat, bulk_server: FakeWachat
) -> None:
    (a,) = await connected(client, bulk_server, "a")
    good = recipients(4)
    items: list[Any] = [
        SendSpec(instance=a, recipient=good[0], message=TextMessage("one")),
        SendSpec(instance=a, recipient="62-abc", message=TextMessage("bad number")),
        SendSpec(instance=a, recipient=good[1], message=TextMessage("")),
        SendSpec(instance=a, recipient="+" + good[0], message=TextMessage("again")),
        {"instance": a, "recipient": good[2], "message": TextMessage("from a mapping")},
        {"instance": a, "to": good[3]},
        SendSpec(instance=a, recipient=good[3], message=TextMessage("opted out")),
        SendSpec(instance=a, recipient="\ud800", message=TextMessage("surrogate")),
    ]
    results = {r.index: r for r in await run(client, items, opt_out=["+" + good[3]])}
    status = {i: r.status for i, r in results.items()}
    assert status == {
        0: BroadcastStatus.SENT,
        1: BroadcastStatus.INVALID,
        2: BroadcastStatus.INVALID,
        3: BroadcastStatus.INVALID,
        4: BroadcastStatus.SENT,
        5: BroadcastStatus.INVALID,
        6: BroadcastStatus.OPTED_OUT,
        7: BroadcastStatus.INVALID,
    }
    assert "digits" in str(results[1].error)
    assert "message must not be empty" in str(results[2].error)
    assert "appears again" in str(results[3].error)
    assert results[3].duplicate_of == 0
    assert [i for i, r in results.items() if r.duplicate_of is not None] == [3]
    assert "not a send spec" in str(results[5].error)
    assert isinstance(results[7].error, InvalidRequestError)
    assert sorted(received(bulk_server, a)) == sorted([good[0], good[2]])


def test_templates_fill_placeholders_and_never_send_one_literally() -> None:
    row = {"name": "Ayu", "order": "A-17", "empty": " "}
    assert render_template("Hi {name}, order {order} shipped {{soon}}", row) == (
        "Hi Ayu, order A-17 shipped {soon}"
    )
    for template, problem in (
        ("Hi {nmae}", "no value for {nmae}"),
        ("Hi {empty}", "no value for {empty}"),
        ("Hi {name!r}", "plain column name"),
        ("Hi {name:>10}", "plain column name"),
        ("Hi {0}", "plain column name"),
        ("Hi {name", "not valid"),
    ):
        with pytest.raises(InvalidRequestError, match=problem.replace("{", r"\{")):
            render_template(template, row)


async def test_a_rerun_skips_what_was_sent(
    client: AsyncWachat, bulk_server: FakeWachat, tmp_path: Path
) -> None:
    (a,) = await connected(client, bulk_server, "a")
    journal = tmp_path / "journal.sqlite"
    items = specs(a, recipients(6))
    first = await run(client, items, journal=journal)
    again = await run(client, items, journal=journal)
    assert {r.status for r in first} == {BroadcastStatus.SENT}
    assert {r.status for r in again} == {BroadcastStatus.SKIPPED}
    assert {r.message_id for r in again} == {r.message_id for r in first}
    assert len(bulk_server.sent_messages(a)) == 6
    # Another campaign is another message for the same recipients.
    other = await run(client, items, journal=journal, campaign="summer")
    assert {r.status for r in other} == {BroadcastStatus.SENT}
    assert KEY.encode() not in journal.read_bytes()


async def test_an_ambiguous_send_is_never_resent_unless_asked(
    client: AsyncWachat, bulk_server: FakeWachat, tmp_path: Path
) -> None:
    (a,) = await connected(client, bulk_server, "a")
    journal = tmp_path / "journal.sqlite"
    numbers = recipients(3)
    bulk_server.inject(Fault.drop_after(), path="/send/text", times=1)  # sent, answer lost
    first = {r.recipient: r for r in await run(client, specs(a, numbers), journal=journal)}
    unknown = [n for n, r in first.items() if r.status is BroadcastStatus.UNKNOWN]
    assert len(unknown) == 1
    assert sorted(received(bulk_server, a)) == numbers  # the lost answer's send did happen
    again = {r.recipient: r for r in await run(client, specs(a, numbers), journal=journal)}
    assert again[unknown[0]].status is BroadcastStatus.UNKNOWN
    assert "not resent" in str(again[unknown[0]].error)
    assert len(bulk_server.sent_messages(a)) == 3
    forced = await run(client, specs(a, numbers), journal=journal, resend_unknown=True)
    assert {r.recipient: r.status for r in forced}[unknown[0]] is BroadcastStatus.SENT
    assert len(bulk_server.sent_messages(a)) == 4


async def test_a_429_pauses_that_instance_only(bulk_server: FakeWachat) -> None:
    patient = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, max_retry_after=0.05)
    async with AsyncWachat(KEY, base_url=bulk_server.base_url, retry_policy=patient) as wa:
        a, b = await connected(wa, bulk_server, "a", "b")
        bulk_server.limit_sends(3, retry_after=0.3)  # beyond max_retry_after: the lane pauses

        async def lift_the_limit() -> None:
            await asyncio.sleep(0.5)
            bulk_server.limit_sends(None)

        lifting = asyncio.create_task(lift_the_limit())
        results = await run(wa, specs(a, recipients(5)) + specs(b, recipients(2)))
        await lifting
        assert {r.status for r in results} == {BroadcastStatus.SENT}
        assert bulk_server.stats["throttled"] >= 2
        # b never had to wait for a: its two sends came before a's fourth.
        assert max(bulk_server.send_times(b)) < sorted(bulk_server.send_times(a))[3]


async def test_an_aggressive_pace_trips_strict_mode_and_the_instance_is_paused(
    client: AsyncWachat, bulk_server: FakeWachat, tmp_path: Path
) -> None:
    a, b = await connected(client, bulk_server, "a", "b")
    bulk_server.set_strict(True, burst=3, window=5.0)
    journal = tmp_path / "journal.sqlite"
    items = specs(a, recipients(10)) + specs(b, recipients(2))
    results = await run(client, items, journal=journal, pace=Pace.off(per_instance=1))
    by = {(r.instance, r.recipient): r.status for r in results}
    a_statuses = [by[a, n] for n in recipients(10)]
    assert a_statuses.count(BroadcastStatus.SENT) == 3
    assert a_statuses.count(BroadcastStatus.PAUSED) == 7  # not FAILED, not hammered
    assert bulk_server.stats["spam_disconnects"] == 1
    assert len(bulk_server.sent_messages(a)) == 3
    assert [by[b, n] for n in recipients(2)] == [BroadcastStatus.SENT] * 2
    # Reconnected, the same run again sends only what was left, each once.
    bulk_server.set_strict(False)
    bulk_server.scan(a)
    again = await run(client, items, journal=journal)
    assert sorted(received(bulk_server, a)) == recipients(10)
    assert [r.status for r in again].count(BroadcastStatus.SENT) == 7


async def test_a_scaled_default_pace_never_trips_scaled_strict_mode(
    client: AsyncWachat, bulk_server: FakeWachat
) -> None:
    """Pace() against strict mode's defaults (more than 3 in 5 s), both scaled down 20x."""
    scale = 0.05
    default = Pace()
    pace = Pace(interval=default.interval * scale, jitter=default.jitter * scale, seed=3)
    (a,) = await connected(client, bulk_server, "a")
    bulk_server.set_strict(True, burst=3, window=5.0 * scale)
    results = await run(client, specs(a, recipients(8)), pace=pace)
    assert {r.status for r in results} == {BroadcastStatus.SENT}
    assert bulk_server.stats["spam_disconnects"] == 0


@pytest.mark.slow
async def test_the_default_pace_never_trips_strict_mode(
    client: AsyncWachat, bulk_server: FakeWachat
) -> None:
    (a,) = await connected(client, bulk_server, "a")
    bulk_server.set_strict(True)  # the defaults: more than 3 messages within 5 s disconnect
    results = await run(client, specs(a, recipients(3)), pace=Pace(seed=1))
    assert {r.status for r in results} == {BroadcastStatus.SENT}
    assert bulk_server.stats["spam_disconnects"] == 0


async def test_a_disconnect_mid_run_pauses_the_instance(
    client: AsyncWachat, bulk_server: FakeWachat, tmp_path: Path
) -> None:
    (a,) = await connected(client, bulk_server, "a")
    journal = tmp_path / "journal.sqlite"
    items = specs(a, recipients(6))
    results: list[BroadcastResult] = []
    async for result in client.messages.send_many(
        items, campaign="c", pace=Pace(interval=0.05, jitter=0.0), journal=journal
    ):
        results.append(result)
        if len(results) == 2:
            bulk_server.logout(a)  # the phone unlinks
    statuses = [r.status for r in results]
    assert statuses[:2] == [BroadcastStatus.SENT] * 2
    assert set(statuses[2:]) == {BroadcastStatus.PAUSED}
    assert "not connected" in str(results[-1].error)
    bulk_server.scan(a)
    again = await run(client, items, journal=journal, campaign="c")
    assert sorted(received(bulk_server, a)) == recipients(6)
    assert [r.status for r in again].count(BroadcastStatus.SKIPPED) == 2


async def test_caps_count_what_the_journal_recorded(
    client: AsyncWachat, bulk_server: FakeWachat, tmp_path: Path
) -> None:
    (a,) = await connected(client, bulk_server, "a")
    journal = tmp_path / "journal.sqlite"
    await run(client, specs(a, recipients(2)), journal=journal, campaign="morning")
    stream = client.messages.send_many(
        specs(a, recipients(1, start=50)),
        campaign="evening",
        pace=Pace(interval=0.0, jitter=0.0, hourly=2),
        journal=journal,
    )
    with pytest.raises(TimeoutError):  # two already sent this hour: the third waits
        await asyncio.wait_for(anext(stream), 0.5)
    await stream.aclose()
    assert len(bulk_server.sent_messages(a)) == 2


async def test_input_is_read_lazily(client: AsyncWachat, bulk_server: FakeWachat) -> None:
    (a,) = await connected(client, bulk_server, "a")
    pulled = itertools.count()

    def endless() -> Iterator[SendSpec]:
        for n in itertools.count():
            next(pulled)
            yield SendSpec(instance=a, recipient=f"62811{n:08d}", message=TextMessage("x"))

    stream = client.messages.send_many(endless(), campaign="c", pace=FAST)
    first = await anext(stream)
    await stream.aclose()
    assert first.status is BroadcastStatus.SENT
    from wachat_async.bulk.broadcast import READ_AHEAD

    assert next(pulled) <= READ_AHEAD + 1


def test_the_blocking_client_broadcasts_too(thread_server: FakeWachat) -> None:
    with Wachat(KEY, base_url=thread_server.base_url) as wa:
        api = wa.instances.create("sync_store").instance.api_instance_name
        thread_server.scan(api)
        statuses = [
            r.status
            for r in wa.messages.send_many(specs(api, recipients(3)), campaign="c", pace=FAST)
        ]
    assert statuses == [BroadcastStatus.SENT] * 3


def test_pace_is_checked_and_projects_durations() -> None:
    with pytest.raises(InvalidRequestError, match="interval"):
        Pace(interval=float("nan"))
    with pytest.raises(InvalidRequestError, match="per_instance"):
        Pace(per_instance=0)
    with pytest.raises(InvalidRequestError, match="hourly"):
        Pace(hourly=0)
    assert Pace().projected_seconds(1) == 0.0
    assert Pace(interval=5, jitter=5).projected_seconds(11) == pytest.approx(75.0)
    assert Pace(interval=0, jitter=0, hourly=10).projected_seconds(25) == 7200.0


_KILLED_RUN = """
import asyncio, sys
from wachat_async import AsyncWachat, Pace, SendSpec, TextMessage

async def main():
    async with AsyncWachat(sys.argv[1], base_url=sys.argv[2]) as wa:
        items = [SendSpec(instance=sys.argv[3], recipient=f"6281{n:08d}", message=TextMessage("x"))
                 for n in range(40)]
        async for result in wa.messages.send_many(
            items, campaign="c", journal=sys.argv[4], pace=Pace(interval=0.05, jitter=0.0)
        ):
            print(result.status, flush=True)

asyncio.run(main())
"""


def test_a_killed_broadcast_resumes_without_sending_twice(
    thread_server: FakeWachat, tmp_path: Path
) -> None:
    with Wachat(KEY, base_url=thread_server.base_url) as wa:
        api = wa.instances.create("killed").instance.api_instance_name
    thread_server.scan(api)
    journal = tmp_path / "journal.sqlite"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_KILLED_RUN))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, str(script), KEY, thread_server.base_url, api, str(journal)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    for _ in range(10):  # some sent, more to go
        assert child.stdout.readline().strip() == "sent"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    assert 10 <= len(thread_server.sent_messages(api)) < 40

    with Wachat(KEY, base_url=thread_server.base_url) as wa:
        items = specs(api, recipients(40), text="x")
        results = list(wa.messages.send_many(items, campaign="c", journal=journal, pace=FAST))
    counts: dict[str, int] = {}
    for message in thread_server.sent_messages(api):
        counts[message["body"]["number"]] = counts.get(message["body"]["number"], 0) + 1
    unknown = {r.recipient for r in results if r.status is BroadcastStatus.UNKNOWN}
    assert len(unknown) <= 1  # at most the one in flight when the process died
    for number in recipients(40):
        assert counts.get(number, 0) == 1 or (number in unknown and counts.get(number, 0) <= 1)


async def test_journal_of_a_broadcast_belongs_to_its_account(
    client: AsyncWachat, bulk_server: FakeWachat, tmp_path: Path
) -> None:
    (a,) = await connected(client, bulk_server, "a")
    journal = tmp_path / "journal.sqlite"
    async with await Journal.open(journal, api_key="another-account", base_url=client.base_url):
        pass
    from wachat_async import JournalMismatchError

    with pytest.raises(JournalMismatchError):
        await run(client, specs(a, recipients(1)), journal=journal)
    assert bulk_server.sent_messages(a) == []
