"""A broadcast on the sandbox, its receipts delivered to a receiver on loopback and written to
the journal; ``wachat broadcast report`` and ``wachat send broadcast`` show per instance the
delivered and read counts the sandbox's receipts make."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import FAST_RETRY, KEY, serving
from wachat_async import AsyncWachat, Pace, SendSpec, TextMessage
from wachat_async.bulk.journal import Journal
from wachat_async.cli import EXIT_OK, main
from wachat_async.testing import FakeWachat
from wachat_async.webhooks import WebhookEvent, WebhookReceiver

SECRET = "whsec_life_report"
CAMPAIGN = "spring"
#: Per instance, who gets a message and who of them reads it.
RECIPIENTS = {"a": ["628200000001", "628200000002", "628200000003"], "b": ["628200000004"]}
READERS = {"a": ["628200000001", "628200000003"], "b": []}


async def broadcast_with_receipts(journal: Path) -> tuple[str, dict[str, str], FakeWachat]:
    """Run the broadcast, let the sandbox deliver every message and the readers read theirs,
    save the receipts to the journal; the base URL and the instances' API names."""
    async with (
        FakeWachat(api_keys={KEY}, qr_pool=2) as server,
        AsyncWachat(KEY, base_url=server.base_url, retry_policy=FAST_RETRY) as wa,
    ):

        async def handler(event: WebhookEvent) -> None:
            pass

        receiver = WebhookReceiver(SECRET, handler, receipts=wa.messages.record_receipt)
        async with serving(receiver.app()) as url:
            await wa.webhooks.upsert(url + "/", events=["messages.update"], secret=SECRET)
            names: dict[str, str] = {}
            for friendly in RECIPIENTS:
                created = await wa.instances.create(f"shop_{friendly}")
                name = created.instance.api_instance_name
                assert name is not None
                server.scan(name)
                names[friendly] = name
            specs = [
                SendSpec(instance=names[f], recipient=number, message=TextMessage("Spring sale"))
                for f, numbers in RECIPIENTS.items()
                for number in numbers
            ]
            ids = [
                r.message_id
                async for r in wa.messages.send_many(
                    specs, campaign=CAMPAIGN, pace=Pace.off(), journal=journal
                )
            ]
            for message_id in ids:
                assert message_id is not None
                await wa.messages.wait_for_status(message_id, "delivered", timeout=30)
            for friendly, numbers in READERS.items():
                for number in numbers:
                    for message_id in server.read_chat(names[friendly], number):
                        await wa.messages.wait_for_status(message_id, "read", timeout=30)
            await wa.messages.save_receipts(journal)
            await server.flush_deliveries()
            await receiver.drain()
        assert server.stats["receipts.delivered"] == 4
        assert server.stats["receipts.read"] == 2
        return server.base_url, names, server


def report_lines(capsys: pytest.CaptureFixture[str], *argv: str) -> list[list[str]]:
    capsys.readouterr()
    assert main(list(argv)) == EXIT_OK
    out = capsys.readouterr().out
    return [line.split("\t") for line in out.splitlines() if "\t" in line]


def test_the_report_counts_what_the_sandbox_receipts_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "journal.sqlite"
    base_url, names, _ = asyncio.run(broadcast_with_receipts(journal))
    lines = report_lines(
        capsys,
        "broadcast",
        "report",
        CAMPAIGN,
        "--journal",
        str(journal),
        "--api-key",
        KEY,
        "--base-url",
        base_url,
    )
    assert lines[0] == ["instance", "sent", "delivered", "read", "failed"]
    assert sorted(lines[1:]) == sorted(
        [[names["a"], "3", "3", "2", "0"], [names["b"], "1", "1", "0", "0"]]
    )
    # Another key cannot read the journal (it is bound to one account).
    capsys.readouterr()
    code = main(
        [
            "broadcast",
            "report",
            CAMPAIGN,
            "--journal",
            str(journal),
            "--api-key",
            "other-key",
            "--base-url",
            base_url,
        ]
    )
    assert code != EXIT_OK
    assert "another account" in capsys.readouterr().err


def test_send_broadcast_shows_the_receipts_its_journal_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "journal.sqlite"
    base_url, names, _ = asyncio.run(broadcast_with_receipts(journal))
    rows = tmp_path / "recipients.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["instance", "number"])
    for friendly, numbers in RECIPIENTS.items():
        for number in numbers:
            writer.writerow([names[friendly], number])
    rows.write_text(buffer.getvalue())
    # The re-run's server is gone: it sends nothing (every row is done) and reads the journal.
    capsys.readouterr()
    main(
        [
            "send",
            "broadcast",
            str(rows),
            "--campaign",
            CAMPAIGN,
            "--text",
            "Spring sale",
            "--journal",
            str(journal),
            "--api-key",
            KEY,
            "--base-url",
            base_url,
            "--json",
        ]
    )
    document = json.loads(capsys.readouterr().out.splitlines()[-1])  # the summary
    receipts = {r["instance"]: (r["delivered"], r["read"]) for r in document["receipts"]}
    assert receipts == {names["a"]: (3, 2), names["b"]: (1, 0)}


async def test_journal_receipts_move_forward_only_and_count_failed(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with await Journal.open(path, api_key=KEY, base_url="http://127.0.0.1:1") as journal:
        for key, message_id in (("k1", "m1"), ("k2", "m2"), ("k3", "m3")):
            await journal.claim_new_message(
                key, campaign="c", instance="i", recipient="1", started_at=0.0
            )
            journal.record_message("c", key, "done", message_id=message_id)
        for message_id, status in (
            ("m1", "read"),
            ("m1", "delivered"),  # late: changes nothing
            ("m2", "delivered"),
            ("m2", "failed"),  # after delivered: changes nothing
            ("m3", "failed"),
            ("m3", "read"),  # after failed: changes nothing
        ):
            journal.record_receipt(message_id, status)
        (counts,) = await journal.receipt_counts("c")
    assert (counts.sent, counts.delivered, counts.read, counts.failed) == (3, 2, 1, 1)


async def test_a_schema_3_journal_gains_the_receipt_columns(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with await Journal.open(path, api_key=KEY, base_url="http://127.0.0.1:1") as journal:
        await journal.claim_new_message(
            "k", campaign="c", instance="i", recipient="1", started_at=0.0
        )
        journal.record_message("c", "k", "done", message_id="m")
    db = sqlite3.connect(path)
    db.executescript(
        "DROP INDEX messages_by_id; ALTER TABLE messages DROP COLUMN receipt; "
        "ALTER TABLE messages DROP COLUMN receipt_at; UPDATE meta SET value = '3' "
        "WHERE key = 'schema';"
    )
    db.close()
    async with await Journal.open(path, api_key=KEY, base_url="http://127.0.0.1:1") as journal:
        journal.record_receipt("m", "delivered")
        (counts,) = await journal.receipt_counts("c")
    assert (counts.sent, counts.delivered) == (1, 1)
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("4",)
    db.close()
