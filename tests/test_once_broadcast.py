"""Broadcasts as a careless user and a hostile server: a key used again by a later campaign,
numbers that are not E.164 as written, a 429 with several messages of one instance in flight,
refusals the server stated, malformed payloads, a journal of the previous schema.

Each test runs against the fake server over loopback; what the server received is the proof.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST_RETRY, KEY
from wachat_async import (
    AsyncWachat,
    BroadcastResult,
    BroadcastStatus,
    InvalidRequestError,
    ListMessage,
    ListSection,
    Pace,
    SendSpec,
    TextMessage,
)
from wachat_async.bulk import Journal
from wachat_async.testing import FakeWachat, Fault
from wachat_async.testing._faults import Fault as FaultValue

S = BroadcastStatus


@pytest.fixture
async def fake() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys={KEY}, qr_pool=2) as server:
        yield server


@pytest.fixture
async def client(fake: FakeWachat) -> AsyncIterator[AsyncWachat]:
    async with AsyncWachat(KEY, base_url=fake.base_url, retry_policy=FAST_RETRY, timeout=5.0) as wa:
        yield wa


async def connected(wa: AsyncWachat, server: FakeWachat, name: str = "store") -> str:
    api = (await wa.instances.create(name)).instance.api_instance_name
    server.scan(api)
    return api


def text_to(instance: str, *numbers: str, key: str | None = None) -> list[SendSpec]:
    return [
        SendSpec(instance=instance, recipient=n, message=TextMessage("Hi"), key=key)
        for n in numbers
    ]


async def run(wa: AsyncWachat, specs: Any, **options: Any) -> list[BroadcastResult]:
    options.setdefault("campaign", "spring")
    options.setdefault("pace", Pace.off(per_instance=4))
    return sorted([r async for r in wa.messages.send_many(specs, **options)], key=lambda r: r.index)


def received(server: FakeWachat, instance: str) -> list[str]:
    return [m["body"]["number"] for m in server.sent_messages(instance)]


# -- keys ---------------------------------------------------------------------------------------


async def test_a_custom_key_used_again_by_a_later_campaign_is_that_campaigns_own(
    client: AsyncWachat, fake: FakeWachat, tmp_path: Path
) -> None:
    api = await connected(client, fake)
    journal = tmp_path / "journal.sqlite"
    first = await run(client, text_to(api, "628100000001", key="welcome"), journal=journal)
    second = await run(
        client,
        text_to(api, "628100000001", key="welcome") + text_to(api, "628100000002", key="other"),
        campaign="summer",
        journal=journal,
    )
    assert [r.status for r in first + second] == [S.SENT, S.SENT, S.SENT]
    assert received(fake, api) == ["628100000001", "628100000001", "628100000002"]
    # Nothing is left claimed and never sent; a re-run of either campaign sends nothing.
    async with await Journal.open(journal, api_key=KEY, base_url=fake.base_url) as log:
        states = {(e.campaign, e.key): e.state for e in await log.message_entries()}
    assert states == {
        ("spring", "welcome"): "done",
        ("summer", "welcome"): "done",
        ("summer", "other"): "done",
    }
    again = await run(
        client, text_to(api, "628100000001", key="welcome"), campaign="summer", journal=journal
    )
    assert [r.status for r in again] == [S.SKIPPED]
    assert len(received(fake, api)) == 3


async def test_a_journal_of_the_previous_schema_keeps_what_it_recorded(
    client: AsyncWachat, fake: FakeWachat, tmp_path: Path
) -> None:
    api = await connected(client, fake)
    journal = tmp_path / "journal.sqlite"
    await run(client, text_to(api, "628100000001"), journal=journal)
    # The same file as schema 2 wrote it: message rows keyed by key alone.
    db = sqlite3.connect(journal)
    db.executescript(
        """
        ALTER TABLE messages RENAME TO new_messages;
        CREATE TABLE messages (key TEXT PRIMARY KEY, campaign TEXT NOT NULL,
            instance TEXT NOT NULL, recipient TEXT NOT NULL, state TEXT NOT NULL,
            message_id TEXT, started_at REAL, error TEXT, updated_at REAL NOT NULL);
        INSERT INTO messages SELECT key, campaign, instance, recipient, state, message_id,
            started_at, error, updated_at FROM new_messages;
        DROP TABLE new_messages;
        UPDATE meta SET value = '2' WHERE key = 'schema';
        """
    )
    db.close()
    again = await run(client, text_to(api, "628100000001", "628100000002"), journal=journal)
    assert [r.status for r in again] == [S.SKIPPED, S.SENT]
    assert received(fake, api) == ["628100000001", "628100000002"]


async def test_a_journal_of_an_unknown_schema_is_refused_before_anything_is_sent(
    client: AsyncWachat, fake: FakeWachat, tmp_path: Path
) -> None:
    api = await connected(client, fake)
    journal = tmp_path / "journal.sqlite"
    await run(client, text_to(api, "628100000001"), journal=journal)
    # closing(): a connection's own ``with`` commits but does not close (3.13 warns).
    with contextlib.closing(sqlite3.connect(journal)) as db, db:
        db.execute("UPDATE meta SET value = '9' WHERE key = 'schema'")
    with pytest.raises(Exception, match="schema 9"):
        await run(client, text_to(api, "628100000002"), journal=journal)
    assert received(fake, api) == ["628100000001"]


# -- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("081234567890", "a leading 0 is a national prefix"),
        ("0049 151 2345 6789", "00 is a call prefix, write +4915123456789"),
        ("00628123456789", "write +628123456789"),
    ],
)
async def test_numbers_that_are_not_e164_as_written_are_refused_by_spec(
    client: AsyncWachat, fake: FakeWachat, written: str, reason: str
) -> None:
    api = await connected(client, fake)
    results = await run(client, text_to(api, written, "+49 151 2345 6789"))
    assert results[0].status is S.INVALID
    assert isinstance(results[0].error, InvalidRequestError)
    assert reason in str(results[0].error)
    assert results[1].status is S.SENT
    assert received(fake, api) == ["4915123456789"]


async def test_the_same_person_written_with_00_in_the_opt_out_list_is_not_messaged(
    client: AsyncWachat, fake: FakeWachat
) -> None:
    api = await connected(client, fake)
    results = await run(
        client,
        text_to(api, "+4915123456789", "628100000001", "628100000002"),
        opt_out=["0049 151 2345 6789", "(00) 62-8100-000002"],
    )
    assert [r.status for r in results] == [S.OPTED_OUT, S.SENT, S.OPTED_OUT]
    assert received(fake, api) == ["628100000001"]


# -- the server's refusals ------------------------------------------------------------------


class Arrivals:
    """When each request reached the server (the loop's clock, which the client shares: the
    server runs in this loop), and whether it met a fault."""

    def __init__(self, server: FakeWachat) -> None:
        self.seen: list[tuple[float, str, FaultValue | None]] = []
        plan = server.faults
        take = plan.take

        def recording(method: str, path: str) -> FaultValue | None:
            fault = take(method, path)
            self.seen.append((asyncio.get_running_loop().time(), path, fault))
            return fault

        plan.take = recording  # type: ignore[method-assign]


@pytest.mark.parametrize("status", [429, 503])
async def test_a_429_holds_every_worker_of_the_instance_for_the_window_the_server_asked(
    client: AsyncWachat, fake: FakeWachat, status: int
) -> None:
    api = await connected(client, fake)
    window = 0.3
    arrivals = Arrivals(fake)
    asked = Fault.status(status, retry_after_ms=int(window * 1000))
    fake.inject(asked, path="/send/text", times=1)
    numbers = [f"6281{n:08d}" for n in range(40)]
    results = await run(client, text_to(api, *numbers), pace=Pace.off(per_instance=4))
    assert [r.status for r in results] == [S.SENT] * 40
    assert sorted(received(fake, api)) == numbers  # each once, the refused one too
    sends = [(at, fault) for at, path, fault in arrivals.seen if path == "/send/text"]
    refused_at = next(at for at, fault in sends if fault is not None)
    inside = [at for at, fault in sends if refused_at < at < refused_at + window]
    # Only what was already on its way when the 429 came back; a worker that kept sending
    # would put most of the 40 inside the window.
    assert len(inside) <= 4, inside


async def test_429s_to_the_end_are_failed_not_unknown_and_a_rerun_sends_them_once(
    client: AsyncWachat, fake: FakeWachat, tmp_path: Path
) -> None:
    api = await connected(client, fake)
    journal = tmp_path / "journal.sqlite"
    fake.inject(Fault.status(429, retry_after=0), path="/send/text", times=None)
    first = await run(client, text_to(api, "628100000001", "628100000002"), journal=journal)
    assert [r.status for r in first] == [S.FAILED, S.FAILED]
    assert all("429" in str(r.error) for r in first)
    fake.clear_faults()
    again = await run(client, text_to(api, "628100000001", "628100000002"), journal=journal)
    assert [r.status for r in again] == [S.SENT, S.SENT]
    assert sorted(received(fake, api)) == ["628100000001", "628100000002"]


@pytest.mark.parametrize("status", [400, 403, 413, 422])
async def test_a_4xx_refusal_is_failed(client: AsyncWachat, fake: FakeWachat, status: int) -> None:
    api = await connected(client, fake)
    fake.inject(Fault.status(status), path="/send/text", times=1)
    results = await run(
        client, text_to(api, "628100000001", "628100000002"), pace=Pace.off(per_instance=1)
    )
    assert [r.status for r in results] == [S.FAILED, S.SENT]


# -- malformed payloads -------------------------------------------------------------------------


async def test_a_malformed_nested_payload_fails_that_spec_alone(
    client: AsyncWachat, fake: FakeWachat
) -> None:
    api = await connected(client, fake)
    bad = ListMessage(
        title="Menu",
        text="Pick one",
        button_text="Open",
        sections=[ListSection("Drinks", rows=[{"title": "Tea"}])],  # type: ignore[list-item]
    )
    specs = [
        SendSpec(instance=api, recipient="628100000001", message=bad),
        {"instance": api, "recipient": "628100000002", "message": {"message": "hi"}},
        *text_to(api, "628100000003"),
    ]
    results = await run(client, specs)
    assert [r.status for r in results] == [S.INVALID, S.INVALID, S.SENT]
    assert "malformed" in str(results[0].error)
    assert received(fake, api) == ["628100000003"]
