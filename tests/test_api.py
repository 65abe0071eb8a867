"""Every other operation over HTTP against the fake server, including its error paths."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import KEY
from wachat_async import (
    AsyncWachat,
    BadRequestError,
    ConflictError,
    ConnectionState,
    InstanceInfo,
    InvalidRequestError,
    ListRow,
    ListSection,
    MediaType,
    NotFoundError,
    QrCode,
    ReplyButton,
    WaitTimeoutError,
    Webhook,
    WebhookEventType,
)
from wachat_async.qr import PNG_SIGNATURE, decode_data_uri, html_img, render_terminal
from wachat_async.testing import FakeWachat
from wachat_async.testing._handlers import PROFILE_JPEG

NUMBER = "628111222333"


async def new_instance(wa: AsyncWachat, friendly: str = "store") -> str:
    return (await wa.instances.create(friendly)).instance.api_instance_name


async def test_qr_is_fresh_and_rotates(wa: AsyncWachat, server: FakeWachat) -> None:
    name = await new_instance(wa)
    first = await wa.instances.qr(name)
    assert isinstance(first, QrCode)
    assert first.code == server.instance(name).qr_code
    assert first.count == 1
    server.rotate_qr(name)
    second = await wa.instances.qr(name)
    assert second.code != first.code
    assert second.count == 2
    assert second.png_bytes() == server.instance(name).qr_png
    assert await wa.instances.qr_image(name) == server.instance(name).qr_png


async def test_qr_urls_carry_the_key_only_when_asked(wa: AsyncWachat, server: FakeWachat) -> None:
    name = await new_instance(wa)
    plain = wa.instances.qr_image_url(name)
    assert plain == f"{server.base_url}/instance/qr/image?instanceName={name}"
    assert "apiKey" not in wa.instances.qr_live_url(name)
    with_key = wa.instances.qr_live_url(name, with_api_key=True)
    assert parse_qs(urlsplit(with_key).query) == {"instanceName": [name], "apiKey": [KEY]}
    # The URL works on its own, as in an <img>/<iframe>, with no Authorization header.
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(wa.instances.qr_image_url(name, with_api_key=True)) as resp:
            assert resp.status == 200
            assert (await resp.read()).startswith(PNG_SIGNATURE)
        async with session.get(with_key) as resp:
            assert resp.status == 200
            assert "<img" in await resp.text()
        async with session.get(plain) as resp:
            assert resp.status == 401


async def test_state_list_and_connection(wa: AsyncWachat, server: FakeWachat) -> None:
    name = await new_instance(wa, "jakarta")
    state = await wa.instances.state(name)
    assert state.state is ConnectionState.CONNECTING
    assert not state.is_connected
    assert state.api_instance_name == name
    assert state.instance_name == "jakarta"
    server.scan(name, profile_name="Jakarta Store")
    state = await wa.instances.state(name)
    assert state.is_connected
    assert state.state is ConnectionState.OPEN
    assert state.profile_name == "Jakarta Store"
    assert state.profile_picture_url is not None
    assert state.owner == f"{server.instance(name).number}@s.whatsapp.net"
    infos = await wa.instances.list()
    assert [type(i) for i in infos] == [InstanceInfo]
    assert infos[0].api_instance_name == name
    assert infos[0].state is ConnectionState.OPEN
    assert infos[0].is_connected is True
    assert infos[0].created_at is not None
    assert await wa.instances.profile_picture(name) == PROFILE_JPEG


async def test_unknown_instance_is_not_found(wa: AsyncWachat) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        await wa.instances.state("t1_nope_nope")
    with pytest.raises(InvalidRequestError):
        await wa.instances.state("  ")


async def test_delete_is_refused_until_logout(wa: AsyncWachat, server: FakeWachat) -> None:
    name = await new_instance(wa)
    server.scan(name)
    with pytest.raises(ConflictError, match="log it out first") as info:
        await wa.instances.delete(name)
    assert info.value.status_code == 409
    # Logout's path is unpublished: the escape hatch reaches the fake's stand-in.
    answer = await wa.request("DELETE", "/instance/logout", params={"instanceName": name})
    assert answer == {"success": True, "message": "Logged out"}
    assert (await wa.instances.state(name)).state is ConnectionState.CLOSE
    await wa.instances.delete(name)
    assert name not in server.instances
    with pytest.raises(NotFoundError):
        await wa.instances.delete(name)


async def test_request_escape_hatch_returns_json_or_bytes(wa: AsyncWachat) -> None:
    name = await new_instance(wa)
    listed = await wa.request("GET", "instance/list")
    assert listed["count"] == 1
    png = await wa.request("GET", "/instance/qr/image", params={"instanceName": name})
    assert png.startswith(PNG_SIGNATURE)
    with pytest.raises(NotFoundError):
        await wa.request("GET", "/instance/nothing-here")


async def test_wait_until_connected_hands_over_each_new_qr(server: FakeWachat) -> None:
    server.qr_ttl = 0.25
    seen_sync: list[QrCode] = []
    seen_async: list[QrCode] = []

    async def on_qr(qr: QrCode) -> None:
        seen_async.append(qr)
        if len(seen_async) == 3:
            server.scan(name)

    async with AsyncWachat(KEY, base_url=server.base_url) as wa:
        name = await new_instance(wa)
        state = await wa.instances.wait_until_connected(
            name, poll_interval=0.1, on_qr=on_qr, timeout=10
        )
        assert state.is_connected
        first = seen_async[0].count
        assert first is not None
        assert [q.count for q in seen_async] == [first + i for i in range(3)]
        assert len({q.code for q in seen_async}) == 3

        other = await new_instance(wa, "never_scanned")
        with pytest.raises(WaitTimeoutError) as info:
            await wa.instances.wait_until_connected(
                other, timeout=0.6, poll_interval=0.1, on_qr=seen_sync.append
            )
        assert isinstance(info.value, TimeoutError)
        assert info.value.last_state.state is ConnectionState.CONNECTING
        assert len(seen_sync) >= 2  # rotated at least once within 0.6 s


async def test_messages_of_every_kind_reach_the_server(wa: AsyncWachat, server: FakeWachat) -> None:
    name = await new_instance(wa)
    with pytest.raises(BadRequestError, match="not connected"):
        await wa.messages.send_text(name, NUMBER, "too early")
    server.scan(name)
    results = [
        await wa.messages.send_text(name, "+62 811-1222-333", "Halo!", delay=1200),
        await wa.messages.send_media(
            name,
            NUMBER,
            "https://cdn.example.com/promo.png",
            media_type=MediaType.IMAGE,
            caption="Promo",
            file_name="promo.png",
            mimetype="image/png",
        ),
        await wa.messages.send_media(
            name, NUMBER, "https://cdn.example.com/a.mp3", media_type="audio"
        ),
        await wa.messages.send_location(
            name, NUMBER, latitude=-6.2, longitude=106.8, place_name="Monas", address="Jakarta"
        ),
        await wa.messages.send_list(
            name,
            NUMBER,
            title="Menu",
            text="Pick one",
            button_text="Open",
            sections=[ListSection("Drinks", [ListRow("Tea", "Hot", "tea"), ListRow("Coffee")])],
            footer_text="Thanks",
        ),
        await wa.messages.send_buttons(
            name, NUMBER, text="Confirm?", buttons=["Yes", ReplyButton(id="no", text="No")]
        ),
    ]
    assert all(r.status_code == 200 and r.success is True for r in results)
    assert results[0].raw["data"]["id"].startswith("3EB0")
    sent = server.sent_messages(name)
    assert [s["path"] for s in sent] == [
        "/send/text",
        "/send/media",
        "/send/media",
        "/send-location",
        "/send/list",
        "/send/button",
    ]
    assert sent[0]["body"] == {
        "instanceName": name,
        "number": NUMBER,
        "type": "text",
        "message": "Halo!",
        "delay": 1200,
    }
    assert sent[1]["body"]["type"] == "image"
    assert sent[1]["body"]["message"] == "Promo"
    assert sent[3]["body"] == {
        "instanceName": name,
        "number": NUMBER,
        "latitude": -6.2,
        "longitude": 106.8,
        "name": "Monas",
        "address": "Jakarta",
    }
    assert sent[4]["body"]["interactive"] == {
        "type": "list",
        "title": "Menu",
        "text": "Pick one",
        "buttonText": "Open",
        "footerText": "Thanks",
        "sections": [
            {
                "title": "Drinks",
                "rows": [
                    {"title": "Tea", "description": "Hot", "rowId": "tea"},
                    {"title": "Coffee"},
                ],
            }
        ],
    }
    assert sent[5]["body"]["interactive"]["buttons"] == [
        {"id": "1", "text": "Yes"},
        {"id": "no", "text": "No"},
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda wa, n: wa.messages.send_text(n, "62abc", "x"), "digits"),
        (lambda wa, n: wa.messages.send_text(n, NUMBER, ""), "message must not be empty"),
        (lambda wa, n: wa.messages.send_text(n, NUMBER, "x", delay=-1), "delay"),
        (
            lambda wa, n: wa.messages.send_media(n, NUMBER, "https://x/y", media_type="sticker"),
            "media_type must be one of",
        ),
        (
            lambda wa, n: wa.messages.send_media(n, NUMBER, "ftp://x/y", media_type="image"),
            r"http\(s\) URL",
        ),
        (lambda wa, n: wa.messages.send_location(n, NUMBER, latitude=91, longitude=0), "latitude"),
        (
            lambda wa, n: wa.messages.send_list(
                n, NUMBER, title="t", text="t", button_text="b", sections=[]
            ),
            "sections must not be empty",
        ),
        (
            lambda wa, n: wa.messages.send_buttons(
                n, NUMBER, text="t", buttons=["a", "b", "c", "d"]
            ),
            "at most 3",
        ),
    ],
)
async def test_bad_message_input_is_refused_before_sending(
    wa: AsyncWachat, server: FakeWachat, call: object, message: str
) -> None:
    name = await new_instance(wa)
    before = len(server.requests)
    with pytest.raises(InvalidRequestError, match=message):
        await call(wa, name)  # type: ignore[operator]
    assert len(server.requests) == before


async def test_webhooks_are_managed(wa: AsyncWachat, server: FakeWachat) -> None:
    name = await new_instance(wa)
    created = await wa.webhooks.upsert(
        "https://example.com/wachat",
        name="prod",
        events=[WebhookEventType.MESSAGES_UPSERT, "connection.update"],
        instance_name=name,
    )
    assert isinstance(created, Webhook)
    assert created.id == 1
    assert created.secret is not None
    assert created.secret.startswith("whsec_")
    assert "secret" not in repr(created)
    assert created.instance is not None
    assert created.instance.api_instance_name == name
    updated = await wa.webhooks.upsert("https://example.com/v2", id=created.id, enabled=False)
    assert updated.url == "https://example.com/v2"
    assert updated.enabled is False
    everywhere = await wa.webhooks.upsert("https://example.com/all", events=["*"], secret="whsec_x")
    assert everywhere.instance is None
    listed = await wa.webhooks.list()
    assert [h.id for h in listed] == [1, 2]
    assert listed[0].secret is not None
    assert "••••" in listed[0].secret
    assert [h.id for h in await wa.webhooks.list(name)] == [1]
    assert listed[1].events == [WebhookEventType.ALL]


async def test_webhook_urls_must_be_https() -> None:
    wa = AsyncWachat("k", base_url="https://app.wachat.net/api/v1")
    with pytest.raises(InvalidRequestError, match="https"):
        await wa.webhooks.upsert("http://127.0.0.1:8080/hook")
    with pytest.raises(InvalidRequestError, match=r"events\[0\] must be one of"):
        await wa.webhooks.upsert("https://example.com/hook", events=["everything"])


def test_qr_helpers() -> None:
    import base64

    png = PNG_SIGNATURE + b"rest"
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    assert decode_data_uri(uri) == png
    with pytest.raises(ValueError, match="not valid base64"):
        decode_data_uri("data:image/png;base64,@@@")
    with pytest.raises(ValueError, match="not a PNG"):
        decode_data_uri("data:image/png;base64," + base64.b64encode(b"GIF89a").decode())
    with pytest.raises(ValueError, match="image/png"):
        decode_data_uri("data:image/jpeg;base64,AAAA")
    with pytest.raises(ValueError, match="no image"):
        QrCode(code="x").png_bytes()
    assert html_img(uri).startswith('<img src="data:image/png;base64,')
    art = render_terminal("2@hello")
    assert set(art) <= {"█", "▀", "▄", " ", "\n"}
    assert scan_terminal_art(art) == "2@hello"


def scan_terminal_art(art: str) -> str:
    """Turn half-block art back into pixels (blocks are light) and read it with zxing-cpp."""
    import zxingcpp
    from PIL import Image

    halves = {"█": (255, 255), "▀": (255, 0), "▄": (0, 255), " ": (0, 0)}
    rows: list[list[int]] = []
    for line in art.splitlines():
        pairs = [halves[c] for c in line]
        rows += [[top for top, _ in pairs], [bottom for _, bottom in pairs]]
    scale = 8
    image = Image.new("L", (len(rows[0]) * scale, len(rows) * scale))
    image.putdata([v for row in rows for _ in range(scale) for v in row for _ in range(scale)])
    results = zxingcpp.read_barcodes(image)
    assert results, "the terminal QR does not scan"
    text: str = results[0].text
    return text


async def test_bot_flow_end_to_end(server: FakeWachat) -> None:
    """Create, get QRs through on_qr, scan, connected, send, delete refused until logout."""
    async with AsyncWachat(KEY, base_url=server.base_url) as wa:
        created = await wa.instances.create("bot_store", number="628123456789")
        name = created.instance.api_instance_name
        qrs: list[QrCode] = []

        def show(qr: QrCode) -> None:
            qrs.append(qr)
            asyncio.get_running_loop().call_later(0.2, server.scan, name)

        state = await wa.instances.wait_until_connected(name, poll_interval=0.05, on_qr=show)
        assert state.is_connected
        assert qrs[0].code == created.qrcode.code if created.qrcode else False
        await wa.messages.send_text(name, NUMBER, "Welcome!")
        assert server.sent_messages(name)[0]["body"]["message"] == "Welcome!"
        with pytest.raises(ConflictError):
            await wa.instances.delete(name)
        server.logout(name)
        await wa.instances.delete(name)
        assert await wa.instances.list() == []
