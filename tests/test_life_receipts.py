"""A message's life: the sandbox sends signed receipts, a receiver on loopback hands them to the
client's message log, and ``wait_for_status`` sees each message move forward only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import FAST_RETRY, KEY, serving
from wachat_async import (
    AsyncWachat,
    InvalidRequestError,
    MessageFailedError,
    MessageStatus,
    WaitTimeoutError,
)
from wachat_async._receipts import MessageLog, advanced
from wachat_async.testing import FakeWachat
from wachat_async.webhooks import MessageStatusUpdate, WebhookEvent, WebhookReceiver, parse_event

SECRET = "whsec_life_receipts"
S = MessageStatus


@contextlib.asynccontextmanager
async def linked(
    wa: AsyncWachat, server: FakeWachat, events: list[WebhookEvent]
) -> AsyncIterator[str]:
    """A connected instance whose receipts reach ``wa.messages`` through a receiver on
    loopback; yields the instance's API name."""

    async def handler(event: WebhookEvent) -> None:
        events.append(event)

    receiver = WebhookReceiver(SECRET, handler, receipts=wa.messages.record_receipt)
    async with serving(receiver.app()) as url:
        await wa.webhooks.upsert(url + "/hook", events=["messages.update"], secret=SECRET)
        created = await wa.instances.create("life")
        name = created.instance.api_instance_name
        assert name is not None
        server.scan(name)
        yield name
        await server.flush_deliveries()
        await receiver.drain()


async def test_a_send_is_delivered_then_read_through_signed_receipts(
    wa: AsyncWachat, server: FakeWachat
) -> None:
    events: list[WebhookEvent] = []
    async with linked(wa, server, events) as name:
        sent = await wa.messages.send_text(name, "628111000001", "Halo")
        assert sent.message_id is not None
        record = wa.messages.status(sent.message_id)
        assert record is not None
        assert (record.status, record.instance, record.recipient) == (
            S.SENT,
            name,
            "628111000001",
        )
        # The sandbox delivers it by itself, a moment later.
        delivered = await wa.messages.wait_for_status(sent.message_id, "delivered", timeout=30)
        assert delivered.status is S.DELIVERED
        # The customer opens the chat (as in the dev phone): it is read.
        assert server.read_chat(name, "628111000001") == [sent.message_id]
        read = await wa.messages.wait_for_status(sent.message_id, S.READ, timeout=30)
        assert read.status is S.READ
        # Already reached: returns at once, for delivered too (read is beyond it).
        assert (await wa.messages.wait_for_status(sent.message_id, "delivered")).status is S.READ
    receipts = [e for e in events if isinstance(e, MessageStatusUpdate)]
    assert [(e.message_status, e.status) for e in receipts] == [
        (S.DELIVERED, "DELIVERY_ACK"),
        (S.READ, "READ"),
    ]
    assert {(e.message_id, e.instance, e.recipient) for e in receipts} == {
        (sent.message_id, name, "628111000001")
    }
    assert receipts[0].raw["data"]["keyId"] == sent.message_id
    assert server.sent_messages(name)[0]["status"] == "read"


async def test_out_of_order_receipts_never_move_a_status_back(
    server: FakeWachat,
) -> None:
    async with AsyncWachat(KEY, base_url=server.base_url, retry_policy=FAST_RETRY) as wa:
        server.receipt_delay = None  # this test sends every receipt itself
        events: list[WebhookEvent] = []
        async with linked(wa, server, events) as name:
            first = await wa.messages.send_text(name, "628111000002", "one")
            second = await wa.messages.send_text(name, "628111000002", "two")
            assert first.message_id
            assert second.message_id
            server.send_receipt(name, first.message_id, "read")
            await wa.messages.wait_for_status(first.message_id, "read", timeout=30)
            # A late delivered, and a failed after the read: both change nothing.
            server.send_receipt(name, first.message_id, "delivered")
            server.send_receipt(name, first.message_id, "failed")
            # The second message fails: its waiter is told so, with a typed error.
            waiting = asyncio.ensure_future(
                wa.messages.wait_for_status(second.message_id, "read", timeout=30)
            )
            server.send_receipt(name, second.message_id, "failed")
            with pytest.raises(MessageFailedError) as failed:
                await waiting
            assert failed.value.record.status is S.FAILED
            # Waiting for failed itself is answered.
            done = await wa.messages.wait_for_status(second.message_id, "failed", timeout=30)
            assert done.status is S.FAILED
        # Every receipt arrived (deliveries run concurrently: in any order).
        got = sorted(
            (e.message_id == first.message_id, str(e.message_status))
            for e in events
            if isinstance(e, MessageStatusUpdate)
        )
        assert got == [(False, "failed"), (True, "delivered"), (True, "failed"), (True, "read")]
        record = wa.messages.status(first.message_id)
        assert record is not None
        assert record.status is S.READ
        assert server.sent_messages(name)[0]["status"] == "read"


async def test_wait_for_status_times_out_with_a_typed_error(
    wa: AsyncWachat, server: FakeWachat
) -> None:
    server.receipt_delay = None
    events: list[WebhookEvent] = []
    async with linked(wa, server, events) as name:
        sent = await wa.messages.send_text(name, "628111000003", "Halo")
        assert sent.message_id
        with pytest.raises(WaitTimeoutError, match="did not reach read"):
            await wa.messages.wait_for_status(sent.message_id, "read", timeout=0.05)
        with pytest.raises(InvalidRequestError, match="status must be one of"):
            await wa.messages.wait_for_status(sent.message_id, "seen", timeout=1)
    assert events == []


def test_the_blocking_client_waits_for_a_status(thread_server: FakeWachat) -> None:
    from wachat_async import Wachat

    with Wachat(KEY, base_url=thread_server.base_url, retry_policy=FAST_RETRY) as wa:
        thread_server.limit_sends(None)
        ref = wa.instances.create("sync_life")
        name = ref.instance.api_instance_name
        assert name is not None
        thread_server.scan(name)
        sent = wa.messages.send_text(name, "628111000004", "Halo")
        assert sent.message_id
        # A receipt handed over from another thread (as a receiver on another loop would).
        receipt = parse_event(
            {},
            b'{"event": "messages.update", "data": {"keyId": "'
            + sent.message_id.encode()
            + b'", "status": "READ"}}',
        )
        assert isinstance(receipt, MessageStatusUpdate)
        wa.messages.record_receipt(receipt)
        assert wa.messages.wait_for_status(sent.message_id, "read", timeout=30).status is S.READ


async def test_sandbox_receipt_control_over_http(wa: AsyncWachat, server: FakeWachat) -> None:
    events: list[WebhookEvent] = []
    async with linked(wa, server, events) as name:
        sent = await wa.messages.send_text(name, "628111000005", "Halo")
        async with aiohttp.ClientSession() as http:
            control = server.control_url
            async with http.post(f"{control}/receipts", json={"delay": None}) as resp:
                assert (await resp.json()) == {"success": True, "delay": None}
            async with http.post(f"{control}/receipts", json={"delay": -1}) as resp:
                assert resp.status == 400
            async with http.post(
                f"{control}/instances/{name}/receipts",
                json={"message_id": sent.message_id, "status": "seen"},
            ) as resp:
                assert resp.status == 400
            async with http.post(
                f"{control}/instances/{name}/receipts",
                json={"message_id": "3EB0NOPE", "status": "read"},
            ) as resp:
                assert resp.status == 404
            async with http.post(
                f"{control}/instances/{name}/read", json={"number": "628111000005"}
            ) as resp:
                body = await resp.json()
            assert body["ids"] == [sent.message_id]
        assert sent.message_id
        await wa.messages.wait_for_status(sent.message_id, "read", timeout=30)


def test_parse_reads_evolution_spellings_and_keeps_unknown_ones() -> None:
    def status(value: object) -> MessageStatusUpdate:
        import json

        body = json.dumps({"event": "MESSAGES_UPDATE", "data": [{"status": value}]})
        event = parse_event({}, body.encode())
        assert isinstance(event, MessageStatusUpdate)
        return event

    assert status("SERVER_ACK").message_status is S.SENT
    assert status("DELIVERY_ACK").message_status is S.DELIVERED
    assert status("PLAYED").message_status is S.READ
    assert status("ERROR").message_status is S.FAILED
    assert status(3).message_status is S.DELIVERED
    odd = status("WEIRD")
    assert (odd.status, odd.message_status) == ("WEIRD", None)
    assert status(True).status is None


def test_the_forward_only_rule_and_the_log_bound() -> None:
    assert advanced(S.READ, S.DELIVERED) is None
    assert advanced(S.DELIVERED, S.FAILED) is None
    assert advanced(S.SENT, S.FAILED) is S.FAILED
    assert advanced(S.FAILED, S.READ) is None
    log = MessageLog(capacity=3)
    for i in range(5):
        log.sent(f"m{i}", instance="a", recipient="1")
    assert [r.message_id for r in log] == ["m2", "m3", "m4"]
    # A receipt that arrives before its send is recorded keeps its status.
    log.advance("early", S.DELIVERED)
    log.sent("early", instance="a", recipient="2", campaign="c", key="k")
    early = log.get("early")
    assert early is not None
    assert (early.status, early.campaign) == (S.DELIVERED, "c")
