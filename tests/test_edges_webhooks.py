"""The webhook receiver under attack: replays (also re-encoded), floods of distinct deliveries,
an unsigned event header that lies, and options that would switch the checks off."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from tests.conftest import serving
from wachat_async import InvalidRequestError, WebhookSignatureError
from wachat_async.webhooks import (
    ConnectionUpdate,
    MessageReceived,
    WebhookEvent,
    WebhookReceiver,
    sign,
    verify_signature,
)

SECRET = "whsec_edges_0123456789"
UPSERT = {
    "event": "messages.upsert",
    "instance": "t1_abc_store",
    "data": {"key": {"remoteJid": "628123456789@s.whatsapp.net", "fromMe": False, "id": "M1"}},
}


def delivery(
    payload: dict[str, Any], *, stamp: str | None = None, event_header: str | None = None
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    stamp = stamp or str(int(time.time()))
    headers = {
        "X-Wachat-Timestamp": stamp,
        "X-Wachat-Signature": sign(SECRET, stamp, body),
        "X-Wachat-Webhook-Id": "7",
        "Content-Type": "application/json",
    }
    if event_header is not None:
        headers["X-Wachat-Event"] = event_header
    return body, headers


def reencoded(hex_signature: str) -> list[str]:
    """The same signature in every other encoding a receiver accepts."""
    raw = bytes.fromhex(hex_signature)
    b64 = base64.b64encode(raw).decode()
    return [
        hex_signature.upper(),
        f"sha256={hex_signature}",
        b64,
        b64.rstrip("="),
        f"sha256={b64}",
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]


class Handled:
    def __init__(self) -> None:
        self.events: list[WebhookEvent] = []

    async def __call__(self, event: WebhookEvent) -> None:
        self.events.append(event)


@pytest.fixture
async def receiver_url() -> AsyncIterator[tuple[WebhookReceiver, Handled, str]]:
    handled = Handled()
    receiver = WebhookReceiver(SECRET, handled)
    async with serving(receiver.app()) as url:
        yield receiver, handled, url + "/"


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def test_replay_is_acknowledged_not_handled_again(
    receiver_url: tuple[WebhookReceiver, Handled, str],
) -> None:
    """The same delivery again (same body, timestamp and signature), and again with the
    signature re-encoded (hex and base64, with and without ``sha256=``): 200, not handled."""
    receiver, handled, url = receiver_url
    body, headers = delivery(UPSERT)
    first = await post(url, body, headers)
    assert first == (200, {"success": True})
    signature = headers["X-Wachat-Signature"]
    for again in [signature, signature, *reencoded(signature)]:
        status, answer = await post(url, body, {**headers, "X-Wachat-Signature": again})
        assert status == 200
        assert answer == {"success": True, "duplicate": True}, again
    await receiver.drain()
    assert len(handled.events) == 1


async def test_distinct_deliveries_are_all_handled(
    receiver_url: tuple[WebhookReceiver, Handled, str],
) -> None:
    receiver, handled, url = receiver_url
    for i in range(5):
        body, headers = delivery({**UPSERT, "data": {"key": {"id": f"M{i}"}}})
        assert (await post(url, body, headers))[0] == 200
    await receiver.drain()
    assert [e.message_id for e in handled.events if isinstance(e, MessageReceived)] == [
        f"M{i}" for i in range(5)
    ]


class _Request:
    """What ``WebhookReceiver.handle`` reads of an aiohttp request: headers and the body."""

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.headers = CIMultiDictProxy(CIMultiDict(headers))
        self._body = body

    async def read(self) -> bytes:
        return self._body


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
async def test_memory_stays_bounded_under_a_flood_of_distinct_deliveries() -> None:
    """50,000 distinct deliveries inside the window, 500 times the replay capacity: what is
    remembered stays at the capacity, and the process does not grow (each remembered delivery
    costs ~200 bytes, so keeping them all would add ~8 MB)."""
    handled = 0

    async def count(event: WebhookEvent) -> None:
        nonlocal handled
        handled += 1

    capacity = 100
    receiver = WebhookReceiver(SECRET, count, replay_capacity=capacity)
    stamp = str(int(time.time()))
    body = json.dumps(UPSERT).encode()
    total = 50_000
    baseline = 0
    for i in range(total):
        signed = body[:-1] + f',"n":{i}}}'.encode()
        headers = {"X-Wachat-Timestamp": stamp, "X-Wachat-Signature": sign(SECRET, stamp, signed)}
        response = await receiver.handle(_Request(signed, headers))  # type: ignore[arg-type]
        assert response.status == 200
        if i % 1000 == 999:
            await receiver.drain()
            assert len(receiver._seen) <= capacity
        if i == 9_999:
            baseline = _resident_bytes()
    await receiver.drain()
    assert handled == total
    assert len(receiver._seen) == capacity
    assert _resident_bytes() - baseline < 4_000_000
    # The oldest were forgotten to make room; the newest are still recognised.
    signed = body[:-1] + f',"n":{total - 1}}}'.encode()
    headers = {"X-Wachat-Timestamp": stamp, "X-Wachat-Signature": sign(SECRET, stamp, signed)}
    await receiver.handle(_Request(signed, headers))  # type: ignore[arg-type]
    await receiver.drain()
    assert handled == total


async def test_unsigned_event_header_never_changes_the_event(
    receiver_url: tuple[WebhookReceiver, Handled, str],
) -> None:
    receiver, handled, url = receiver_url
    body, headers = delivery(UPSERT, event_header="connection.update")
    assert (await post(url, body, headers))[0] == 200
    body, headers = delivery(
        {"instance": "t1_abc_store", "data": {"state": "open"}}, event_header="connection.update"
    )
    assert (await post(url, body, headers))[0] == 200
    body, headers = delivery(
        {"event": "connection.update", "data": {"state": "close"}}, event_header="messages.upsert"
    )
    assert (await post(url, body, headers))[0] == 200
    await receiver.drain()
    first, second, third = handled.events
    assert type(first) is MessageReceived
    assert first.message_id == "M1"
    assert type(second) is WebhookEvent  # no signed event name: not taken from the header
    assert not isinstance(second, ConnectionUpdate)
    assert type(third) is ConnectionUpdate


@pytest.mark.parametrize(
    "options",
    [
        {"replay_capacity": 0},
        {"replay_capacity": -1},
        {"replay_capacity": 1.5},
        {"replay_capacity": True},
        {"tolerance": float("nan")},
        {"tolerance": float("inf")},
        {"tolerance": 0},
        {"tolerance": -5},
        {"tolerance": "300"},
    ],
)
def test_receiver_options_that_would_disable_checks_are_refused(options: dict[str, Any]) -> None:
    name = next(iter(options))
    with pytest.raises(InvalidRequestError, match=name):
        WebhookReceiver(SECRET, Handled(), **options)


@pytest.mark.parametrize("tolerance", [float("nan"), float("inf"), -1.0])
def test_verify_signature_refuses_a_tolerance_that_accepts_any_timestamp(
    tolerance: float,
) -> None:
    body, headers = delivery(UPSERT, stamp="1000000000")  # 2001: long stale
    with pytest.raises((WebhookSignatureError, InvalidRequestError)):
        verify_signature(
            SECRET,
            headers["X-Wachat-Timestamp"],
            body,
            headers["X-Wachat-Signature"],
            tolerance=tolerance,
        )
