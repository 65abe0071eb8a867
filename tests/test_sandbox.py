"""The sandbox driven from outside: the HTTP control endpoints, auto-scan, and the gateway's
pacing rules (rate limit, anti-spam disconnects). Everything talks HTTP on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web

from tests.conftest import KEY, no_other_tasks, serving, tasks_left_after_settling
from wachat_async import AsyncWachat, BadRequestError, RateLimitError
from wachat_async.testing import CONTROL_PREFIX, FakeWachat, Fault
from wachat_async.testing._control import control_allowed
from wachat_async.testing._pacing import Pacing
from wachat_async.testing._server import QR_EXPIRY_TASK
from wachat_async.testing._web import Refused

SECRET = "whsec_sandbox_secret"
CUSTOMER = "628999888777"


@attrs.frozen
class Received:
    headers: dict[str, str]
    body: bytes


@attrs.define
class Inbox:
    """A webhook endpoint on loopback that keeps every delivery it gets."""

    url: str
    items: asyncio.Queue[Received]

    async def next(self, event: str, timeout: float = 5.0) -> Received:
        async with asyncio.timeout(timeout):
            while True:
                item = await self.items.get()
                if item.headers["X-Wachat-Event"] == event:
                    return item


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    items: asyncio.Queue[Received] = asyncio.Queue()

    async def handle(request: web.Request) -> web.Response:
        await items.put(Received(dict(request.headers), await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    async with serving(app) as root:
        yield Inbox(f"{root}/hook", items)


@pytest.fixture
def sandbox() -> Iterator[FakeWachat]:
    """The sandbox on a thread of its own, as ``wachat sandbox`` runs beside a client."""
    with FakeWachat.in_thread(api_keys={KEY}, qr_pool=4) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def control(
    http: aiohttp.ClientSession,
    server: FakeWachat,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = server.control_url + path
    async with http.request(method, url, json=body, headers=headers) as resp:
        assert resp.content_type == "application/json"
        answer: dict[str, Any] = await resp.json()
        return resp.status, answer


def client(server: FakeWachat, **options: Any) -> AsyncWachat:
    return AsyncWachat(KEY, base_url=server.base_url, settle_delay=0.05, **options)


async def new_instance(server: FakeWachat, friendly: str) -> str:
    async with client(server) as wa:
        created = await wa.instances.create(friendly)
    return created.instance.api_instance_name


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Computed here, independently of the fake and of the library."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


# -- the control endpoints ---------------------------------------------------------------------


async def test_control_prefix_is_outside_the_api(sandbox: FakeWachat) -> None:
    assert CONTROL_PREFIX == "/_sandbox"
    assert sandbox.control_url.endswith(CONTROL_PREFIX)
    assert "/api/v1" not in sandbox.control_url


async def test_a_phone_scans_over_http_and_the_waiting_client_connects(
    sandbox: FakeWachat, http: aiohttp.ClientSession
) -> None:
    name = await new_instance(sandbox, "jakarta")
    status, answer = await control(http, sandbox, "GET", "/instances")
    assert status == 200
    assert answer["success"] is True
    assert answer["count"] == 1
    (view,) = answer["instances"]
    assert view["api_name"] == name
    assert view["display_name"] == "jakarta"
    assert view["state"] == "connecting"
    assert view["qrcode"]["code"] == sandbox.instance(name).qr_code
    assert view["qrcode"]["base64"].startswith("data:image/png;base64,")
    assert view["qrcode"]["count"] == 1
    assert view["sent_count"] == 0

    async with client(sandbox) as wa:
        waiting = asyncio.create_task(
            wa.instances.wait_until_connected(name, timeout=10, poll_interval=0.05)
        )
        await asyncio.sleep(0.2)
        assert not waiting.done()
        # By friendly name: it is unambiguous.
        status, answer = await control(
            http, sandbox, "POST", "/instances/jakarta/scan", {"profile_name": "Jakarta Store"}
        )
        assert status == 200
        assert answer["instance"]["state"] == "open"
        assert answer["instance"]["qrcode"] is None
        state = await asyncio.wait_for(waiting, 5)
    assert state.is_connected
    assert state.profile_name == "Jakarta Store"
    assert sandbox.instance(name).number is not None


async def test_rotate_disconnect_and_views_over_http(
    sandbox: FakeWachat, http: aiohttp.ClientSession
) -> None:
    name = await new_instance(sandbox, "store")
    first = sandbox.instance(name).qr_code
    status, answer = await control(http, sandbox, "POST", f"/instances/{name}/rotate-qr")
    assert status == 200
    assert answer["instance"]["qrcode"]["count"] == 2
    assert answer["instance"]["qrcode"]["code"] == sandbox.instance(name).qr_code != first

    # Scanning with no body at all is fine.
    status, answer = await control(http, sandbox, "POST", f"/instances/{name}/scan")
    assert (status, answer["instance"]["profile_name"]) == (200, "store")
    status, answer = await control(http, sandbox, "POST", f"/instances/{name}/rotate-qr")
    assert status == 409
    assert answer == {"success": False, "error": f"Instance {name} is already connected"}
    # The in-process method is the same code, so it refuses with the same words.
    with pytest.raises(Refused, match="already connected"):
        sandbox.rotate_qr(name)

    status, answer = await control(http, sandbox, "POST", f"/instances/{name}/disconnect")
    assert (status, answer["instance"]["state"]) == (200, "close")
    async with client(sandbox) as wa:
        assert not (await wa.instances.state(name)).is_connected
    status, answer = await control(http, sandbox, "GET", f"/instances/{name}")
    assert answer["instance"]["state"] == "close"
    assert answer["instance"]["qrcode"]["count"] >= 2  # a closed instance shows a QR again


async def test_sent_messages_are_listed_oldest_first(
    sandbox: FakeWachat, http: aiohttp.ClientSession
) -> None:
    name = await new_instance(sandbox, "shop")
    sandbox.scan(name)  # from this (another) thread: hops onto the server's loop
    async with client(sandbox) as wa:
        first = await wa.messages.send_text(name, "628111222333", "one")
        second = await wa.messages.send_text(name, "628111222333", "two")
    status, answer = await control(http, sandbox, "GET", f"/instances/{name}/sent")
    assert status == 200
    assert answer["count"] == 2
    assert [s["id"] for s in answer["sent"]] == [first.raw["data"]["id"], second.raw["data"]["id"]]
    assert [s["body"]["message"] for s in answer["sent"]] == ["one", "two"]
    assert {s["path"] for s in answer["sent"]} == {"/send/text"}
    assert answer["sent"][0]["at"] <= answer["sent"][1]["at"] <= time.time()
    assert sandbox.send_times(name) == [s["at"] for s in answer["sent"]]
    status, answer = await control(http, sandbox, "GET", "/instances")
    assert answer["instances"][0]["sent_count"] == 2


async def test_an_incoming_message_reaches_the_webhook_signed(
    sandbox: FakeWachat, http: aiohttp.ClientSession, inbox: Inbox
) -> None:
    name = await new_instance(sandbox, "bot")
    async with client(sandbox) as wa:
        hook = await wa.webhooks.upsert(inbox.url, instance_name=name, secret=SECRET)
    await control(http, sandbox, "POST", f"/instances/{name}/scan")
    connected = await inbox.next("connection.update")
    assert json.loads(connected.body)["data"]["state"] == "open"

    status, answer = await control(
        http,
        sandbox,
        "POST",
        f"/instances/{name}/messages",
        {"from": CUSTOMER, "text": "Apakah buka hari ini?", "push_name": "Budi"},
    )
    assert status == 200
    message_id = answer["id"]
    got = await inbox.next("messages.upsert")
    timestamp = got.headers["X-Wachat-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    assert hmac.compare_digest(
        got.headers["X-Wachat-Signature"], expected_signature(SECRET, timestamp, got.body)
    )
    assert got.headers["X-Wachat-Webhook-Id"] == str(hook.id)
    payload = json.loads(got.body)
    assert payload["event"] == "messages.upsert"
    assert payload["instance"] == name
    assert payload["data"]["key"] == {
        "remoteJid": f"{CUSTOMER}@s.whatsapp.net",
        "fromMe": False,
        "id": message_id,
    }
    assert payload["data"]["message"] == {"conversation": "Apakah buka hari ini?"}
    assert payload["data"]["pushName"] == "Budi"

    for _ in range(100):  # the log entry is written once the receiver has answered
        status, answer = await control(http, sandbox, "GET", "/deliveries")
        if answer["count"] == 2:
            break
        await asyncio.sleep(0.02)
    assert [(d["event"], d["status"], d["error"]) for d in answer["deliveries"]] == [
        ("connection.update", 200, None),
        ("messages.upsert", 200, None),
    ]
    assert {(d["webhook_id"], d["instance"]) for d in answer["deliveries"]} == {(hook.id, name)}


async def test_bad_input_and_unknown_names_are_answered_in_json(
    sandbox: FakeWachat, http: aiohttp.ClientSession
) -> None:
    name = await new_instance(sandbox, "twin")
    await new_instance(sandbox, "twin")
    for method, path in [
        ("GET", "/instances/nobody"),
        ("POST", "/instances/nobody/scan"),
        ("POST", "/instances/nobody/disconnect"),
        ("POST", "/instances/nobody/rotate-qr"),
        ("POST", "/instances/nobody/messages"),
        ("GET", "/instances/nobody/sent"),
        ("GET", "/instances/twin"),  # two instances share that friendly name
    ]:
        status, answer = await control(http, sandbox, method, path, {"from": "1", "text": "x"})
        assert status == 404, path
        assert answer["success"] is False
        assert "No single instance named" in answer["error"]
    status, answer = await control(http, sandbox, "GET", "/nothing-here")
    assert status == 404
    assert answer["success"] is False
    for body, field in [
        ({"from": "+62 811", "text": "hi"}, "from"),
        ({"text": "hi"}, "from"),
        ({"from": CUSTOMER, "text": ""}, "text"),
        ({"from": CUSTOMER, "text": "hi", "push_name": 7}, "push_name"),
    ]:
        status, answer = await control(http, sandbox, "POST", f"/instances/{name}/messages", body)
        assert status == 400
        assert answer["error"].startswith(field)
    status, answer = await control(http, sandbox, "POST", f"/instances/{name}/scan", [1])
    assert (status, answer["error"]) == (400, "Request body must be a JSON object")


async def test_control_is_neither_recorded_nor_faulted(
    sandbox: FakeWachat, http: aiohttp.ClientSession
) -> None:
    name = await new_instance(sandbox, "quiet")
    before = len(sandbox.requests)
    sandbox.inject(Fault.status(503), times=None)
    status, _ = await control(http, sandbox, "POST", f"/instances/{name}/scan")
    assert status == 200
    assert len(sandbox.requests) == before
    sandbox.clear_faults()


# -- authorization -----------------------------------------------------------------------------


def test_control_is_open_on_loopback_only() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert control_allowed(host, None, {KEY})
    for host in ("0.0.0.0", "::", "192.0.2.2", "sandbox.example"):
        assert not control_allowed(host, None, {KEY})
        assert not control_allowed(host, "wrong", {KEY})
        assert control_allowed(host, KEY, {KEY})


async def test_control_on_a_server_bound_beyond_loopback_needs_the_key(
    http: aiohttp.ClientSession,
) -> None:
    # Bound to every interface, yet reached over loopback only: no traffic leaves the machine.
    async with FakeWachat(api_keys={KEY}, host="0.0.0.0") as server:
        local = f"http://127.0.0.1:{server.port}/_sandbox"

        async def ask(key: str | None) -> tuple[int, dict[str, Any]]:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            async with http.get(f"{local}/instances", headers=headers) as resp:
                answer: dict[str, Any] = await resp.json()
                return resp.status, answer

        status, answer = await ask(None)
        assert (status, answer["success"]) == (401, False)
        assert (await ask("wrong"))[0] == 401
        status, answer = await ask(KEY)
        assert (status, answer["count"]) == (200, 0)


# -- auto-scan ---------------------------------------------------------------------------------


async def test_auto_scan_connects_new_instances_by_itself(inbox: Inbox) -> None:
    async with FakeWachat(api_keys={KEY}, qr_pool=2, auto_scan=0.2) as server:
        async with client(server) as wa:
            await wa.webhooks.upsert(inbox.url, secret=SECRET, events=["connection.update"])
            name = (await wa.instances.create("demo")).instance.api_instance_name
            assert not (await wa.instances.state(name)).is_connected
            state = await wa.instances.wait_until_connected(name, timeout=5, poll_interval=0.05)
            assert state.is_connected
            cloud = await wa.instances.create(
                "cloud",
                integration="WHATSAPP-BUSINESS",
                meta_token="t",
                meta_business_id="b",
                meta_phone_number_id="p",
            )
            gone = (await wa.instances.create("gone")).instance.api_instance_name
            await wa.instances.delete(gone)  # deleted before its scan: the scan is dropped
        update = json.loads((await inbox.next("connection.update")).body)
        assert (update["instance"], update["data"]["state"]) == (name, "open")
        await asyncio.sleep(0.3)
        assert server.stats["auto_scans"] == 1
        assert cloud.instance.api_instance_name in server.instances


async def test_pending_auto_scans_end_with_the_server() -> None:
    async with FakeWachat(api_keys={KEY}, qr_pool=2, auto_scan=0.3) as server:
        name = await new_instance(server, "late")
    await asyncio.sleep(0.5)
    assert server.instance(name).state == "connecting"  # the timer died with the server
    assert await no_other_tasks() == []


# -- pacing ------------------------------------------------------------------------------------


async def connected(server: FakeWachat, friendly: str) -> str:
    name = await new_instance(server, friendly)
    server.scan(name)
    return name


async def send_raw(
    http: aiohttp.ClientSession, server: FakeWachat, name: str, text: str
) -> tuple[int, dict[str, Any], str | None]:
    body = {"instanceName": name, "number": CUSTOMER, "type": "text", "message": text}
    headers = {"Authorization": f"Bearer {KEY}"}
    async with http.post(f"{server.base_url}/send/text", json=body, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def test_the_rate_limit_answers_429_with_retry_after(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeWachat(api_keys={KEY}, qr_pool=2, send_rate_limit=2) as server:
        name = await connected(server, "paced")
        other = await connected(server, "other")
        for text in ("one", "two"):
            status, _, _ = await send_raw(http, server, name, text)
            assert status == 200
        status, answer, retry_after = await send_raw(http, server, name, "three")
        assert status == 429
        assert answer["success"] is False
        assert "Rate limit" in answer["error"]
        oldest = server.send_times(name)[0]
        assert retry_after == str(math.ceil(oldest + 60 - time.time()))
        assert len(server.sent_messages(name)) == 2  # the refused send was not made
        assert server.stats["throttled"] == 1
        # The limit is per instance.
        assert (await send_raw(http, server, other, "hello"))[0] == 200

        server.limit_sends(2, retry_after=7)
        status, _, retry_after = await send_raw(http, server, name, "four")
        assert (status, retry_after) == (429, "7")
        async with client(server, max_retries=0) as wa:
            with pytest.raises(RateLimitError) as info:
                await wa.messages.send_text(name, CUSTOMER, "five")
        assert info.value.retry_after == 7

        status, answer = await control(http, server, "POST", "/limits", {"per_minute": None})
        assert status == 200
        assert answer["limits"]["per_minute"] is None
        assert (await send_raw(http, server, name, "six"))[0] == 200


def test_retry_after_counts_until_the_oldest_send_leaves_the_minute() -> None:
    now = 1_000_000.0
    pacing = Pacing(per_minute=2)
    assert pacing.throttled([now - 50.5], now) is None
    assert pacing.throttled([now - 70, now - 50.5, now - 10], now) == 10
    assert pacing.throttled([now - 61, now - 59.5], now) is None
    pacing.limit(1)
    assert pacing.throttled([now - 59.5], now) == 1
    with pytest.raises(ValueError, match="per_minute"):
        pacing.limit(0)


async def test_strict_mode_disconnects_on_a_burst(
    http: aiohttp.ClientSession, inbox: Inbox
) -> None:
    async with FakeWachat(api_keys={KEY}, qr_pool=2, strict=True) as server:
        server.set_strict(True, burst=2, window=0.5)
        name = await connected(server, "spammy")
        async with client(server) as wa:
            await wa.webhooks.upsert(inbox.url, secret=SECRET, events=["connection.update"])
            await wa.messages.send_text(name, CUSTOMER, "one")
            await wa.messages.send_text(name, CUSTOMER, "two")
            with pytest.raises(BadRequestError, match="not connected"):
                await wa.messages.send_text(name, CUSTOMER, "three")
            with pytest.raises(BadRequestError, match="not connected"):
                await wa.messages.send_text(name, CUSTOMER, "four")
            assert not (await wa.instances.state(name)).is_connected
        assert len(server.sent_messages(name)) == 2
        assert server.stats["spam_disconnects"] == 1
        update = json.loads((await inbox.next("connection.update")).body)
        assert update["data"] == {"instance": name, "state": "close", "statusReason": 428}


async def test_strict_mode_lets_a_slow_pace_through(http: aiohttp.ClientSession) -> None:
    async with FakeWachat(api_keys={KEY}, qr_pool=2) as server:
        status, answer = await control(
            http, server, "POST", "/limits", {"strict": True, "burst": 2, "window": 0.5}
        )
        assert status == 200
        assert answer["limits"] == {
            "per_minute": None,
            "retry_after": None,
            "strict": True,
            "burst": 2,
            "window": 0.5,
        }
        name = await connected(server, "patient")
        async with client(server) as wa:
            for i in range(5):
                await wa.messages.send_text(name, CUSTOMER, f"message {i}")
                await asyncio.sleep(0.3)  # at most two sends in any 0.5 s
        assert server.instance(name).state == "open"
        assert server.stats["spam_disconnects"] == 0
        times = server.send_times(name)
        assert len(times) == 5
        assert all(later - earlier >= 0.25 for earlier, later in itertools.pairwise(times))


async def test_limits_are_checked(http: aiohttp.ClientSession, sandbox: FakeWachat) -> None:
    before = (await control(http, sandbox, "GET", "/limits"))[1]["limits"]
    for body in (
        {"per_minute": 0},
        {"burst": "3"},
        {"window": -1},
        {"strict": "yes"},
        {"retry_after": -2},
        {"speed": 1},
    ):
        status, answer = await control(http, sandbox, "POST", "/limits", body)
        assert status == 400, body
        assert answer["success"] is False
    assert (await control(http, sandbox, "GET", "/limits"))[1]["limits"] == before


async def test_closing_leaves_no_task_behind(inbox: Inbox) -> None:
    async with FakeWachat(api_keys={KEY}, qr_pool=2, auto_scan=5.0, qr_ttl=0.2) as server:
        async with client(server) as wa:
            await wa.webhooks.upsert(inbox.url, secret=SECRET)
            name = (await wa.instances.create("busy")).instance.api_instance_name
        server.receive_message(name, CUSTOMER, "still there?")
        assert any(t.get_name() == QR_EXPIRY_TASK for t in await no_other_tasks())
    assert await tasks_left_after_settling() == []
