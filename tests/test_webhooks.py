"""Incoming webhooks: signature vectors, rejections, typed events, the receiver over HTTP, and the
full loop from the fake server's signed deliveries to a bot's handler."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import KEY
from wachat_async import AsyncWachat, ConnectionState, WebhookEventType, WebhookSignatureError
from wachat_async.testing import FakeWachat
from wachat_async.webhooks import (
    ChatsUpdate,
    ConnectionUpdate,
    ContactsUpdate,
    MessageReceived,
    MessageStatusUpdate,
    QrCodeUpdated,
    WebhookEvent,
    WebhookPayloadError,
    WebhookReceiver,
    parse_event,
    sign,
    verify_signature,
)

SECRET = "whsec_test_secret"
# Known answers computed outside Python, with
#   printf '%s' "$TIMESTAMP.$BODY" | openssl dgst -sha256 -hmac whsec_test_secret [-binary | base64]
BODY = b'{"event":"connection.update","instance":"t1_abc_store","data":{"state":"open"}}'
TIMESTAMP = "1764072000"
HEX = "b54220ebf09b6730505780ac92a9a58be5b50126c70818bbd8e6b1e053fbbc1b"
B64 = "tUIg6/CbZzBQV4Cskqmli+W1ASbHCBi72Oax4FP7vBs="
BODY_MS = b'{"event":"messages.upsert"}'
TIMESTAMP_MS = "1764072000123"
HEX_MS = "bfeab0b95260205cb5d9a989fde8653c81d4b66755c8747edf284c698525be68"
B64URL_MS = "v-qwuVJgIFy12amJ_ehlPIHUtmdVyHR-3yhMaYUlvmg"
NOW = 1764072000.0 + 30


@pytest.mark.parametrize(
    "signature",
    [
        HEX,
        HEX.upper(),
        f"sha256={HEX}",
        f"SHA256={HEX.upper()}",
        B64,
        f"sha256={B64}",
        B64.rstrip("="),
        f"  {HEX}  ",
    ],
)
def test_every_plausible_encoding_verifies(signature: str) -> None:
    verify_signature(SECRET, TIMESTAMP, BODY, signature, now=NOW)
    verify_signature(SECRET, TIMESTAMP, BODY.decode(), signature, now=NOW)


@pytest.mark.parametrize("signature", [HEX_MS, B64URL_MS, f"sha256={B64URL_MS}"])
def test_millisecond_timestamps_and_url_safe_base64(signature: str) -> None:
    verify_signature(SECRET, TIMESTAMP_MS, BODY_MS, signature, now=NOW)


def test_sign_matches_the_independent_vector() -> None:
    assert sign(SECRET, TIMESTAMP, BODY) == HEX


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "signature", "reason"),
    [
        (SECRET, TIMESTAMP, BODY.replace(b"open", b"close"), HEX, "does not match"),
        (SECRET, "1764072001", BODY, HEX, "does not match"),
        (SECRET, "1764060000", BODY, HEX, "outside the 300 s tolerance"),
        (SECRET, "1764090000", BODY, HEX, "outside the 300 s tolerance"),
        ("whsec_wrong", TIMESTAMP, BODY, HEX, "does not match"),
        (SECRET, TIMESTAMP, BODY, "", "missing signature"),
        (SECRET, TIMESTAMP, BODY, None, "missing signature"),
        (SECRET, None, BODY, HEX, "missing timestamp"),
        (SECRET, "yesterday", BODY, HEX, "timestamp is not a number"),
        (SECRET, TIMESTAMP, BODY, "not-a-signature!", "neither hex nor base64"),
        (SECRET, TIMESTAMP, BODY, HEX[:-2], "neither hex nor base64"),
        ("", TIMESTAMP, BODY, HEX, "no webhook secret"),
    ],
)
def test_tampering_staleness_and_junk_are_rejected(
    secret: str, timestamp: str | None, body: bytes, signature: str | None, reason: str
) -> None:
    with pytest.raises(WebhookSignatureError, match=reason) as info:
        verify_signature(secret, timestamp, body, signature, now=NOW)
    assert SECRET not in str(info.value)


def test_rotating_secrets_any_may_match() -> None:
    verify_signature(["whsec_new", SECRET], TIMESTAMP, BODY, HEX, now=NOW)
    with pytest.raises(WebhookSignatureError):
        verify_signature(["whsec_new", "whsec_other"], TIMESTAMP, BODY, HEX, now=NOW)


def event(name: str | None, payload: dict[str, object]) -> WebhookEvent:
    """A delivery as Wachat sends it: the event named in the signed body (and the header)."""
    headers = {"X-Wachat-Event": name} if name else {}
    body = {"event": name, **payload} if name else payload
    return parse_event(
        {**headers, "x-wachat-timestamp": TIMESTAMP, "X-Wachat-Webhook-Id": "7"},
        json.dumps(body).encode(),
    )


def test_events_are_typed() -> None:
    connection = event(
        "connection.update", {"instance": "t1_a_b", "data": {"state": "open", "statusReason": 200}}
    )
    assert isinstance(connection, ConnectionUpdate)
    assert connection.state is ConnectionState.OPEN
    assert connection.status_reason == 200
    assert connection.instance == "t1_a_b"
    assert connection.webhook_id == "7"
    assert connection.timestamp == 1764072000.0

    message = event(
        None,
        {
            "event": "messages.upsert",
            "instance": "t1_a_b",
            "data": {
                "key": {"remoteJid": "628111222333@s.whatsapp.net", "fromMe": False, "id": "3EB0X"},
                "pushName": "Budi",
                "message": {"extendedTextMessage": {"text": "Halo"}},
                "messageType": "extendedTextMessage",
            },
        },
    )
    assert isinstance(message, MessageReceived)
    assert (message.text, message.sender_number, message.push_name) == (
        "Halo",
        "628111222333",
        "Budi",
    )
    assert message.from_me is False

    qr = event("qrcode.updated", {"data": {"qrcode": {"code": "2@x", "base64": None, "count": 3}}})
    assert isinstance(qr, QrCodeUpdated)
    assert qr.qrcode is not None
    assert qr.qrcode.count == 3

    status = event("messages.update", {"data": {"key": {"id": "3EB0X"}, "status": "READ"}})
    assert isinstance(status, MessageStatusUpdate)
    assert status.status == "READ"
    assert isinstance(event("contacts.update", {"data": [{"remoteJid": "x"}]}), ContactsUpdate)
    assert isinstance(event("CHATS_UPDATE", {"data": []}), ChatsUpdate)


def test_unknown_or_odd_events_are_kept_not_rejected() -> None:
    assert event("CALL_OFFER", {}).event == "CALL_OFFER"  # unknown names are kept as sent
    future = event("groups.upsert", {"data": {"id": "g1"}, "extra": True})
    assert type(future) is WebhookEvent
    assert future.event == "groups.upsert"
    assert not future.event.is_known
    assert future.raw["extra"] is True
    odd = event("messages.upsert", {"data": "not an object"})
    assert isinstance(odd, MessageReceived)
    assert odd.text is None
    assert event("connection.update", {"data": {"state": 5}}).state is None  # type: ignore[attr-defined]
    with pytest.raises(WebhookPayloadError):
        parse_event({}, b"[1, 2]")
    with pytest.raises(WebhookPayloadError):
        parse_event({}, b"\xff not json")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def health(_: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def gate() -> asyncio.Event:
    """Open unless a test closes it: a closed gate holds every handler back."""
    event = asyncio.Event()
    event.set()
    return event


@pytest.fixture
async def receiver(
    gate: asyncio.Event,
) -> AsyncIterator[tuple[str, list[WebhookEvent], WebhookReceiver]]:
    """A receiver mounted inside an existing app, on loopback, as a bot would run it."""
    received: list[WebhookEvent] = []

    async def handler(e: WebhookEvent) -> None:
        await gate.wait()
        received.append(e)

    hooks = WebhookReceiver(SECRET, handler)
    app = web.Application()
    app.router.add_get("/health", health)
    app.add_subapp("/wachat", hooks.app())
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/wachat/", received, hooks
    finally:
        await runner.cleanup()


async def test_receiver_answers_over_http(
    receiver: tuple[str, list[WebhookEvent], WebhookReceiver], gate: asyncio.Event
) -> None:
    url, received, hooks = receiver
    now = str(int(time.time()))
    good = {
        "X-Wachat-Event": "connection.update",
        "X-Wachat-Timestamp": now,
        "X-Wachat-Signature": "sha256=" + sign(SECRET, now, BODY),
    }
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        gate.clear()  # the handler cannot finish: the answer must not wait for it
        async with session.post(url, data=BODY, headers=good) as resp:
            assert resp.status == 200
        assert received == []
        gate.set()
        async with session.post(url, data=BODY + b" ", headers=good) as resp:
            assert resp.status == 401
            assert "does not match" in (await resp.json())["error"]
        async with session.post(url, data=BODY, headers={**good, "X-Wachat-Signature": ""}) as resp:
            assert resp.status == 401
        junk = b"not json"
        signed_junk = {**good, "X-Wachat-Signature": sign(SECRET, now, junk)}
        async with session.post(url, data=junk, headers=signed_junk) as resp:
            assert resp.status == 400
    await hooks.drain()
    assert len(received) == 1
    assert isinstance(received[0], ConnectionUpdate)
    assert "***" in repr(hooks)


async def test_full_loop_from_fake_server_to_handler(
    wa: AsyncWachat, server: FakeWachat, receiver: tuple[str, list[WebhookEvent], WebhookReceiver]
) -> None:
    url, received, hooks = receiver
    created = await wa.instances.create("bot")
    name = created.instance.api_instance_name
    await wa.webhooks.upsert(url, instance_name=name, secret=SECRET, events=["*"])
    server.rotate_qr(name)
    server.scan(name)
    server.receive_message(name, "628999888777", "Apakah buka hari ini?")
    await server.flush_deliveries()
    await hooks.drain()
    assert [d.status for d in server.deliveries] == [200, 200, 200]
    kinds = {type(e) for e in received}
    assert kinds == {QrCodeUpdated, ConnectionUpdate, MessageReceived}
    connected = next(e for e in received if isinstance(e, ConnectionUpdate))
    assert connected.state is ConnectionState.OPEN
    assert connected.instance == name
    message = next(e for e in received if isinstance(e, MessageReceived))
    assert message.text == "Apakah buka hari ini?"
    assert message.sender_number == "628999888777"
    assert message.event is WebhookEventType.MESSAGES_UPSERT


async def test_the_readme_bot_answers_messages(
    server: FakeWachat, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WACHAT_API_KEY", KEY)
    monkeypatch.setenv("WACHAT_BASE_URL", server.base_url)
    path = Path(__file__).resolve().parents[1] / "examples" / "bot.py"
    spec = importlib.util.spec_from_file_location("readme_bot", path)
    assert spec is not None
    assert spec.loader is not None
    bot = importlib.util.module_from_spec(spec)
    sys.modules["readme_bot"] = bot
    spec.loader.exec_module(bot)
    port = free_port()
    url = f"http://127.0.0.1:{port}/wachat"  # as the example registers it: a path, not /
    task = asyncio.create_task(bot.run_bot(url, port, host="127.0.0.1"))
    try:
        for _ in range(100):
            if server.webhooks:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        name = server.instance("support_bot").api_name
        server.scan(name)
        server.receive_message(name, "628999888777", "ping")
        for _ in range(100):
            if server.sent_messages(name):
                break
            await asyncio.sleep(0.05)
        assert server.sent_messages(name)[0]["body"] == {
            "instanceName": name,
            "number": "628999888777",
            "type": "text",
            "message": "You said: ping",
        }
        assert f"{name} is connected" in capsys.readouterr().out
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_the_readme_shows_the_bot_that_is_tested() -> None:
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    blocks = readme.split("```python\n")
    bot = next(b.split("```", 1)[0] for b in blocks if "async def run_bot" in b)
    assert bot.rstrip() == (root / "examples" / "bot.py").read_text().rstrip()
    assert len(bot.rstrip().splitlines()) < 40
