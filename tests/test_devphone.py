"""The dev phone: the sandbox's page in a browser, and the event stream it follows.

The first half talks HTTP only (the page's files, the event stream, its authorization, its end
when the server closes). The second half drives the page in a real browser: Debian's
``chromium`` run by Playwright, headless; those tests skip, saying how to install it, only when
no chromium or no Playwright can be found. Screenshots go to ``<tmp_path>/screenshots`` and one
to ``/tmp/devphone.png``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web

from tests.conftest import KEY, no_other_tasks, serving
from wachat_async import AsyncWachat
from wachat_async.models import ListRow, ListSection
from wachat_async.testing import FakeWachat
from wachat_async.testing._changes import Changes
from wachat_async.testing._devphone import DevPhone
from wachat_async.webhooks import MessageReceived, WebhookEvent, WebhookReceiver

try:
    from playwright.async_api import Browser, Locator, Page, async_playwright, expect
except ImportError:  # the browser tests skip (see the ``browser`` fixture)
    HAVE_PLAYWRIGHT = False
else:
    HAVE_PLAYWRIGHT = True

SECRET = "whsec_devphone_secret"
CUSTOMER = "628111222333"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOWCASE = Path("/tmp/devphone.png")


def root_url(server: FakeWachat) -> str:
    """The server's root over loopback, whatever address it is bound to."""
    return f"http://127.0.0.1:{server.port}"


def client(server: FakeWachat) -> AsyncWachat:
    return AsyncWachat(KEY, base_url=root_url(server) + "/api/v1", settle_delay=0.05)


# -- reading an event stream -------------------------------------------------------------------


@attrs.frozen
class Event:
    kind: str
    data: dict[str, Any]
    seq: int | None


async def next_event(resp: aiohttp.ClientResponse, timeout: float = 5.0) -> Event | None:
    """The next event of a ``text/event-stream`` answer; None at its end."""
    kind, data, seq = "message", None, None
    async with asyncio.timeout(timeout):
        while True:
            raw = await resp.content.readline()
            if not raw:
                return None
            line = raw.decode().rstrip("\n")
            if not line:
                if data is not None:
                    return Event(kind, data, seq)
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(": ")
            if field == "event":
                kind = value
            elif field == "data":
                data = json.loads(value)
            elif field == "id":
                seq = int(value)


async def next_of(resp: aiohttp.ClientResponse, kind: str) -> Event:
    while True:
        event = await next_event(resp)
        assert event is not None, f"the stream ended before a {kind!r} event"
        if event.kind == kind:
            return event


@contextlib.asynccontextmanager
async def event_stream(
    http: aiohttp.ClientSession, server: FakeWachat, *, key: str | None = None
) -> AsyncIterator[aiohttp.ClientResponse]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.get(root_url(server) + "/_sandbox/events", headers=headers) as resp:
        yield resp


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sandbox() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys={KEY}, qr_pool=4) as server:
        yield server


@attrs.define
class Hook:
    """A webhook endpoint on loopback that keeps what it got."""

    url: str
    bodies: asyncio.Queue[dict[str, Any]]


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    bodies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def handle(request: web.Request) -> web.Response:
        await bodies.put(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    async with serving(app) as root:
        yield Hook(f"{root}/hook", bodies)


# -- the page's files --------------------------------------------------------------------------


async def test_the_root_leads_to_the_page_and_its_files(
    sandbox: FakeWachat, http: aiohttp.ClientSession
) -> None:
    root = root_url(sandbox)
    async with http.get(root + "/", allow_redirects=False) as resp:
        assert (resp.status, resp.headers["Location"]) == (302, "/_sandbox/phone/")
    async with http.get(root + "/_sandbox/phone", allow_redirects=False) as resp:
        assert (resp.status, resp.headers["Location"]) == (302, "/_sandbox/phone/")
    assert sandbox.dev_phone_url == root + "/_sandbox/phone/"
    async with http.get(root + "/") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        page = await resp.text()
        csp = resp.headers["Content-Security-Policy"]
    assert '<script src="devphone.js" defer></script>' in page
    assert "script-src 'self'" in csp
    assert "connect-src 'self'" in csp
    # Nothing from elsewhere: no CDN, no web font, no HTML built from data.
    assert "http:" not in page
    assert "https:" not in page
    for name, content_type in (("devphone.js", "text/javascript"), ("devphone.css", "text/css")):
        async with http.get(f"{root}/_sandbox/phone/{name}") as resp:
            assert (resp.status, resp.content_type) == (200, content_type)
            text = await resp.text()
            assert "http://" not in text
            assert "https://" not in text
            assert "@import" not in text
            assert "innerHTML" not in text
    async with http.get(root + "/_sandbox/phone/secrets.txt") as resp:
        assert resp.status == 404
        assert (await resp.json())["success"] is False


# -- the event stream --------------------------------------------------------------------------


async def test_the_stream_starts_with_a_snapshot_then_follows_every_change(
    sandbox: FakeWachat, http: aiohttp.ClientSession, hook: Hook
) -> None:
    async with client(sandbox) as wa:
        first = (await wa.instances.create("store")).instance.api_instance_name
        sandbox.scan(first)
        sent = await wa.messages.send_text(first, CUSTOMER, "hello")
        sandbox.receive_message(first, CUSTOMER, "hi there", push_name="Budi")
        await wa.webhooks.upsert(hook.url, secret=SECRET, events=["messages.upsert"])

        async with event_stream(http, sandbox) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/event-stream"
            snapshot = await next_event(resp)
            assert snapshot is not None
            assert snapshot.kind == "snapshot"
            (view,) = snapshot.data["instances"]
            assert (view["api_name"], view["state"]) == (first, "open")
            assert [m["body"]["message"] for m in view["sent"]] == ["hello"]
            assert view["sent"][0]["id"] == sent.raw["data"]["id"]
            assert [(m["from"], m["text"], m["push_name"]) for m in view["received"]] == [
                (CUSTOMER, "hi there", "Budi")
            ]
            assert snapshot.data["deliveries"] == []

            second = (await wa.instances.create("branch")).instance.api_instance_name
            created = await next_of(resp, "instance")
            assert created.data["why"] == "created"
            assert created.data["instance"]["api_name"] == second
            assert created.data["instance"]["qrcode"]["base64"].startswith("data:image/png")

            sandbox.rotate_qr(second)
            rotated = await next_of(resp, "instance")
            assert rotated.data["why"] == "qr"
            assert rotated.data["instance"]["qrcode"]["count"] == 2

            sandbox.scan(second)
            connected = await next_of(resp, "instance")
            assert (connected.data["why"], connected.data["instance"]["state"]) == ("state", "open")

            await wa.messages.send_location(
                second, CUSTOMER, latitude=-6.2, longitude=106.8, place_name="Store"
            )
            out = await next_of(resp, "message")
            assert (out.data["instance"], out.data["direction"]) == (second, "out")
            assert out.data["message"]["path"] == "/send-location"
            assert out.data["message"]["body"]["name"] == "Store"

            message_id = sandbox.receive_message(second, CUSTOMER, "where are you?")
            incoming = await next_of(resp, "message")
            assert (incoming.data["direction"], incoming.data["message"]["id"]) == (
                "in",
                message_id,
            )
            assert incoming.data["message"]["text"] == "where are you?"
            delivery = await next_of(resp, "delivery")
            assert delivery.data["delivery"]["event"] == "messages.upsert"
            assert delivery.data["delivery"]["instance"] == second
            assert delivery.data["delivery"]["status"] == 200
            assert (await hook.bodies.get())["data"]["message"]["conversation"] == "where are you?"

            sandbox.logout(second)
            await next_of(resp, "instance")
            await wa.instances.delete(second)
            deleted = await next_of(resp, "instance.deleted")
            assert deleted.data == {"api_name": second}
            assert deleted.seq is not None
            assert created.seq is not None
            assert deleted.seq > created.seq


async def test_customer_messages_are_kept_per_instance(
    sandbox: FakeWachat, http: aiohttp.ClientSession
) -> None:
    async with client(sandbox) as wa:
        name = (await wa.instances.create("shop")).instance.api_instance_name
    first = sandbox.receive_message(name, CUSTOMER, "one")
    second = sandbox.receive_message(name, "628999", "two", push_name="Sari")
    async with http.get(f"{sandbox.control_url}/instances/{name}/received") as resp:
        answer = await resp.json()
    assert answer["count"] == 2
    assert [(r["id"], r["from"], r["text"], r["push_name"]) for r in answer["received"]] == [
        (first, CUSTOMER, "one", None),
        (second, "628999", "two", "Sari"),
    ]
    assert answer["received"][0]["at"] <= answer["received"][1]["at"] <= time.time()
    assert sandbox.received_messages(name) == answer["received"]
    async with http.get(f"{sandbox.control_url}/instances/{name}") as resp:
        assert (await resp.json())["instance"]["received_count"] == 2


async def test_many_streams_end_when_the_server_closes() -> None:
    async with aiohttp.ClientSession() as http:
        server = await FakeWachat(api_keys={KEY}, qr_pool=2).start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                streams = [
                    await stack.enter_async_context(event_stream(http, server)) for _ in range(12)
                ]
                for resp in streams:
                    assert (await next_event(resp)) is not None  # the snapshot
                assert server._changes.watchers == 12
                async with client(server) as wa:
                    await wa.instances.create("many")
                for resp in streams:
                    assert (await next_of(resp, "instance")).data["why"] == "created"
                started = time.monotonic()
                await server.close()
                assert time.monotonic() - started < 5
                for resp in streams:
                    assert await next_event(resp) is None  # the end of the stream
                assert server._changes.watchers == 0
        finally:
            await server.close()
    assert await no_other_tasks() == []


def test_the_stream_of_a_server_in_a_thread_ends_with_it() -> None:
    async def watch(url: str, snapshot: asyncio.Event) -> bool:
        """Read the stream to its end: whether it ended (rather than timed out)."""
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert (await next_event(resp)) is not None
            snapshot.set()
            while await next_event(resp, timeout=10) is not None:
                pass
            return True

    async def main() -> tuple[float, bool]:
        snapshot = asyncio.Event()
        running = FakeWachat.in_thread(api_keys={KEY}, qr_pool=2)
        server = running.__enter__()
        try:
            watcher = asyncio.create_task(watch(server.control_url + "/events", snapshot))
            await asyncio.wait_for(snapshot.wait(), 5)
        finally:
            started = time.monotonic()
            # Stops the server's loop, then closes the server in its thread: an open stream
            # must not hold that up (the thread is given 10 s before it is left behind).
            await asyncio.to_thread(running.__exit__, None, None, None)
        return time.monotonic() - started, await asyncio.wait_for(watcher, 5)

    took, ended = asyncio.run(main())
    assert ended
    assert took < 5


async def test_a_browser_that_goes_away_is_forgotten(
    sandbox: FakeWachat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DevPhone, "keepalive", 0.05)
    reader, writer = await asyncio.open_connection("127.0.0.1", sandbox.port)
    host = f"127.0.0.1:{sandbox.port}".encode()
    writer.write(b"GET /_sandbox/events HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    await writer.drain()
    assert b"text/event-stream" in await reader.readuntil(b"\r\n\r\n")
    assert sandbox._changes.watchers == 1
    writer.close()
    await writer.wait_closed()
    async with asyncio.timeout(5):
        while sandbox._changes.watchers:
            await asyncio.sleep(0.02)


async def test_open_streams_are_capped(
    sandbox: FakeWachat, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DevPhone, "max_streams", 2)
    async with event_stream(http, sandbox) as one, event_stream(http, sandbox) as two:
        assert (one.status, two.status) == (200, 200)
        async with event_stream(http, sandbox) as three:
            assert three.status == 503
            assert "Too many" in (await three.json())["error"]


async def test_a_watcher_that_falls_behind_is_dropped() -> None:
    made: list[int] = []

    def data(n: int) -> Callable[[], dict[str, Any]]:
        def make() -> dict[str, Any]:
            made.append(n)
            return {"n": n}

        return make

    changes = Changes(max_pending=3)
    slow, fast = changes.subscribe(), changes.subscribe()
    for n in range(3):
        changes.publish("n", data(n))
    for n in range(3):
        change = await fast.next(1)
        assert change is not None
        assert (change.kind, change.data) == ("n", {"n": n})
    changes.publish("n", data(3))
    assert slow.overflowed
    assert await slow.next(1) is None  # what it had is stale: it ends at once
    assert changes.watchers == 1
    changes.publish("n", data(4))
    changes.close()
    changes.publish("n", data(5))
    assert made == [0, 1, 2, 3, 4]  # nobody watches any more: the data is not even made
    assert await fast.next(1) is not None  # what was pending is still read...
    assert await fast.next(1) is not None
    assert await fast.next(1) is None  # ...then the end
    assert changes.subscribe().ended
    with pytest.raises(TimeoutError):
        await Changes().subscribe().next(0.01)


async def test_the_stream_needs_the_key_off_loopback(http: aiohttp.ClientSession) -> None:
    async with FakeWachat(api_keys={KEY}, host="0.0.0.0", qr_pool=2) as server:
        root = root_url(server)
        # The page holds no data: served to anyone.
        async with http.get(root + "/") as resp:
            assert resp.status == 200
        async with event_stream(http, server) as resp:
            assert resp.status == 401
        async with event_stream(http, server, key="wrong") as resp:
            assert resp.status == 401
        # No key in a query string, ever.
        async with http.get(f"{root}/_sandbox/events?apiKey={KEY}") as resp:
            assert resp.status == 401
        async with event_stream(http, server, key=KEY) as resp:
            assert resp.status == 200
            assert (await next_event(resp)) is not None


# -- in a real browser -------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOW_TO_INSTALL = (
    "apt-get install chromium (Debian's package; as root) and pip install playwright "
    "(do not run `playwright install`: the tests use the system chromium)"
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        pytest.skip(f"browser tests need chromium, which is not installed: {HOW_TO_INSTALL}")
    if not HAVE_PLAYWRIGHT:
        pytest.skip(f"browser tests need Playwright, which is not installed: {HOW_TO_INSTALL}")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[Page, str], Awaitable[Path]]:
    folder = tmp_path / "screenshots"
    folder.mkdir()

    async def shoot(page: Page, name: str) -> Path:
        path = folder / f"{name}.png"
        await page.screenshot(path=str(path))
        return path

    return shoot


@contextlib.asynccontextmanager
async def open_page(
    browser: Browser, url: str, *, width: int = 1280, height: int = 800
) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
    try:
        await page.goto(url)
        yield page
    finally:
        await context.close()
    assert problems == []


def card(page: Page, display_name: str) -> Locator:
    """The instance card whose heading is ``display_name``."""
    return page.locator("li.card").filter(
        has=page.get_by_role("heading", name=display_name, exact=True)
    )


def png(width: int = 240, height: int = 150) -> bytes:
    """A small picture (an orange sky, a red sun, a green field)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), (255, 183, 77))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 2 - 35, 30, width // 2 + 35, 100), fill=(229, 57, 53))
    draw.rectangle((0, height - 30, width, height), fill=(0, 115, 92))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture
async def pictures() -> AsyncIterator[str]:
    """A loopback server of pictures, for media messages: its root URL."""
    body = png()

    async def picture(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name}", picture)
    async with serving(app) as root:
        yield root


async def test_scan_with_phone_on_the_page_connects_the_client(
    browser: Browser, shots: Callable[[Page, str], Awaitable[Path]]
) -> None:
    async with (
        FakeWachat(api_keys={KEY}, qr_ttl=1.0) as server,
        client(server) as wa,
    ):
        name = (await wa.instances.create("store")).instance.api_instance_name
        async with open_page(browser, root_url(server) + "/") as page:
            store = card(page, "store")
            await expect(store).to_be_visible()
            await expect(store.locator(".badge")).to_have_text("connecting")
            qr = store.get_by_role("img", name="QR code")
            await expect(qr).to_be_visible()
            first = await qr.get_attribute("src")
            assert first is not None
            assert first.startswith("data:image/png;base64,")
            assert await qr.evaluate("img => img.naturalWidth") > 0
            # QR codes rotate every qr_ttl seconds: the page shows each new one.
            await expect(qr).not_to_have_attribute("src", first, timeout=5000)
            await shots(page, "1-waiting-for-scan")

            await store.get_by_role("button", name="Scan with phone").click()
            state = await wa.instances.wait_until_connected(name, timeout=10, poll_interval=0.1)
            assert state.is_connected
            await expect(store.locator(".badge")).to_have_text("open")
            await expect(qr).to_be_hidden()
            await expect(
                store.get_by_role("button", name="Scan with phone")
            ).to_be_hidden()  # a connected card has nothing to scan
            await shots(page, "2-connected")

            await store.get_by_role("button", name="Disconnect").click()
            await expect(store.locator(".badge")).to_have_text("close")
            assert not (await wa.instances.state(name)).is_connected


async def test_what_the_client_sends_shows_in_the_chat(
    browser: Browser,
    shots: Callable[[Page, str], Awaitable[Path]],
    pictures: str,
    sandbox: FakeWachat,
) -> None:
    async with client(sandbox) as wa:
        name = (await wa.instances.create("store")).instance.api_instance_name
        sandbox.scan(name)
        async with open_page(browser, sandbox.dev_phone_url) as page:
            chat = page.get_by_role("log")
            await expect(chat).to_have_attribute("aria-live", "polite")
            await expect(page.get_by_role("heading", name="Chat: store")).to_be_visible()

            await wa.messages.send_text(name, CUSTOMER, "hello")
            await wa.messages.send_list(
                name,
                CUSTOMER,
                title="Our menu",
                text="Pick a category",
                button_text="See options",
                footer_text="Store Jakarta",
                sections=[
                    ListSection("Drinks", [ListRow("Coffee", "Hot, 20k", "c"), ListRow("Tea")]),
                    ListSection("Food", [ListRow("Nasi goreng", "Spicy", "n")]),
                ],
            )
            await wa.messages.send_location(
                name,
                CUSTOMER,
                latitude=-6.2,
                longitude=106.816666,
                place_name="Store Jakarta",
                address="Jl. Sudirman 1, Jakarta",
            )
            await wa.messages.send_buttons(
                name, CUSTOMER, text="Shall we deliver?", buttons=["Yes", "No", "Later"]
            )
            await wa.messages.send_media(
                name, CUSTOMER, f"{pictures}/promo.png", media_type="image", caption="Promo!"
            )
            await wa.messages.send_media(
                name,
                CUSTOMER,
                f"{pictures}/price-list.pdf",
                media_type="document",
                file_name="price-list.pdf",
                mimetype="application/pdf",
            )
            markup = '<img src=x onerror="alert(1)"><b>bold?</b>'
            await wa.messages.send_text(name, CUSTOMER, markup)

            sent = chat.locator("li.msg.out")
            await expect(sent).to_have_count(7)
            await expect(sent.nth(0)).to_contain_text("hello")
            await expect(sent.nth(0)).to_contain_text(f"to +{CUSTOMER}")

            menu = sent.nth(1)
            await expect(menu).to_contain_text("Our menu")
            await expect(menu).to_contain_text("Pick a category")
            toggle = menu.get_by_role("button", name="See options")
            await expect(toggle).to_have_attribute("aria-expanded", "false")
            await expect(menu.get_by_role("button", name="Coffee")).to_be_hidden()
            await toggle.click()
            await expect(toggle).to_have_attribute("aria-expanded", "true")
            await expect(menu.get_by_role("heading", name="Drinks")).to_be_visible()
            coffee = menu.get_by_role("button", name="Coffee")
            await expect(coffee).to_be_visible()
            await expect(coffee).to_contain_text("Hot, 20k")
            await expect(menu.get_by_role("heading", name="Food")).to_be_visible()
            await expect(menu.get_by_role("button", name="Nasi goreng")).to_contain_text("Spicy")

            place = sent.nth(2)
            await expect(place).to_contain_text("Store Jakarta")
            await expect(place).to_contain_text("Jl. Sudirman 1, Jakarta")
            await expect(place).to_contain_text("-6.20000, 106.81667")

            buttons = sent.nth(3).get_by_role("group", name="Reply buttons").get_by_role("button")
            await expect(buttons).to_have_text(["Yes", "No", "Later"])

            image = sent.nth(4).get_by_role("img", name="Promo!")
            await expect(image).to_be_visible()
            await expect(image).to_have_attribute("src", f"{pictures}/promo.png")
            await page.wait_for_function(
                "() => document.querySelector('img.media-image').naturalWidth > 0"
            )
            document = sent.nth(5)
            await expect(document).to_contain_text("price-list.pdf")
            await expect(document).to_contain_text("application/pdf")

            # Text is text: shown as written, never run or rendered as HTML.
            await expect(sent.nth(6)).to_contain_text(markup)
            assert await chat.locator("b").count() == 0
            assert await chat.locator("img").count() == 1

            await shots(page, "3-chat-wide")
            await page.set_viewport_size({"width": 420, "height": 900})
            await expect(sent.nth(6)).to_be_visible()
            await shots(page, "4-chat-narrow")
            await page.set_viewport_size({"width": 1280, "height": 800})

            # A reply button and a list row answer as the customer with their ids (tests/
            # test_sandbox_devphone_ux.py follows what the page posts).
            async with page.expect_request(f"**/instances/{name}/messages") as posted:
                await buttons.nth(0).click()
            request = await posted.value
            assert request.post_data_json == {"from": CUSTOMER, "selected_id": "1"}


async def test_answering_as_the_customer_reaches_the_bot(
    browser: Browser,
    shots: Callable[[Page, str], Awaitable[Path]],
    sandbox: FakeWachat,
) -> None:
    events: asyncio.Queue[WebhookEvent] = asyncio.Queue()

    async def on_event(event: WebhookEvent) -> None:
        await events.put(event)

    receiver = WebhookReceiver(SECRET, on_event)
    async with serving(receiver.app()) as hook_root, client(sandbox) as wa:
        name = (await wa.instances.create("store")).instance.api_instance_name
        await wa.instances.create("branch")
        await wa.webhooks.upsert(
            f"{hook_root}/", instance_name=name, secret=SECRET, events=["messages.upsert"]
        )
        sandbox.scan(name)
        await wa.messages.send_text(name, CUSTOMER, "Welcome to Store! How can we help?")
        await wa.messages.send_buttons(
            name, CUSTOMER, text="Open today?", buttons=["Yes", "No"], title="Hours"
        )
        await wa.messages.send_location(
            name, CUSTOMER, latitude=-6.2, longitude=106.8166, place_name="Store Jakarta"
        )
        async with open_page(browser, root_url(sandbox) + "/") as page:
            await card(page, "store").get_by_role("button", name="Open chat").click()
            await expect(page.get_by_role("heading", name="Chat: store")).to_be_visible()
            await page.get_by_label("Customer's number").fill("628555000111")
            await page.get_by_label("Message as the customer").fill("Do you deliver to Bogor?")
            await page.get_by_role("button", name="Send as customer").click()

            event = await asyncio.wait_for(events.get(), 10)
            assert isinstance(event, MessageReceived)
            assert event.text == "Do you deliver to Bogor?"
            assert event.sender_number == "628555000111"
            assert event.instance == name

            incoming = page.get_by_role("log").locator("li.msg.in")
            await expect(incoming).to_have_count(1)
            await expect(incoming).to_contain_text("Do you deliver to Bogor?")
            await expect(incoming).to_contain_text("+628555000111")
            await expect(page.get_by_label("Message as the customer")).to_have_value("")

            deliveries = page.get_by_role("table")
            row = deliveries.get_by_role("row").filter(has_text="messages.upsert")
            await expect(row).to_have_count(1)
            await expect(row).to_contain_text("200")
            await expect(row).to_contain_text("store")
            await wa.messages.send_text(name, "628555000111", "Yes, we do!")
            await expect(page.get_by_role("log").locator("li.msg")).to_have_count(5)
            showcase = await shots(page, "5-customer-answered")
            shutil.copyfile(showcase, SHOWCASE)

        # A page opened later shows the whole conversation.
        async with open_page(browser, sandbox.dev_phone_url, width=420, height=900) as later:
            await card(later, "store").get_by_role("button", name="Open chat").click()
            messages = later.get_by_role("log").locator("li.msg")
            await expect(messages).to_have_count(5)
            await expect(messages.nth(3)).to_contain_text("Do you deliver to Bogor?")
            await expect(messages.nth(4)).to_contain_text("Yes, we do!")
            await expect(later.get_by_role("table").get_by_role("row")).to_have_count(2)
            await shots(later, "6-later-tab-narrow")
        await receiver.drain()


async def test_the_page_works_by_keyboard_and_labels_its_fields(
    browser: Browser, sandbox: FakeWachat
) -> None:
    async with client(sandbox) as wa:
        name = (await wa.instances.create("store")).instance.api_instance_name
        async with open_page(browser, sandbox.dev_phone_url) as page:
            await expect(card(page, "store")).to_be_visible()
            await expect(page.get_by_role("heading", level=1)).to_contain_text("Wachat sandbox")
            for heading in ("Instances", "Webhook deliveries"):
                await expect(page.get_by_role("heading", level=2, name=heading)).to_be_visible()

            for _ in range(30):
                await page.keyboard.press("Tab")
                focused = await page.evaluate("document.activeElement.textContent")
                if focused == "Scan with phone":
                    break
            else:
                pytest.fail("Tab never reached the Scan with phone button")
            await page.keyboard.press("Enter")
            await wa.instances.wait_until_connected(name, timeout=10, poll_interval=0.1)
            # The pressed button is now disabled: the focus moved to the one that undoes it.
            await expect(
                card(page, "store").get_by_role("button", name="Disconnect")
            ).to_be_focused()

            # Every field has a label; every control is a real button or field.
            unlabelled = await page.evaluate(
                """() => [...document.querySelectorAll('input, select, textarea')]
                      .filter(f => !f.labels.length || !f.labels[0].textContent.trim())
                      .map(f => f.id || f.name)"""
            )
            assert unlabelled == []
            assert await page.locator("[onclick], div[tabindex], span[tabindex]").count() == 0

            # Answer as the customer by keyboard alone.
            await page.get_by_label("Customer's number").focus()
            await page.keyboard.press("Control+A")
            await page.keyboard.type(CUSTOMER)
            await page.keyboard.press("Tab")
            await expect(page.get_by_label("Message as the customer")).to_be_focused()
            await page.keyboard.type("typed, not clicked")
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("log").locator("li.msg.in")).to_contain_text(
                "typed, not clicked"
            )
            assert sandbox.received_messages(name)[-1]["text"] == "typed, not clicked"


async def test_off_loopback_the_page_asks_for_the_key(
    browser: Browser, shots: Callable[[Page, str], Awaitable[Path]]
) -> None:
    async with FakeWachat(api_keys={KEY}, host="0.0.0.0", qr_pool=2) as server:
        async with client(server) as wa:
            name = (await wa.instances.create("store")).instance.api_instance_name
        async with open_page(browser, root_url(server) + "/") as page:
            seen: list[tuple[str, str | None]] = []
            page.on(
                "request",
                lambda request: seen.append((request.url, request.headers.get("authorization"))),
            )
            key_field = page.get_by_label("API key")
            await expect(key_field).to_be_visible()
            await expect(key_field).to_have_attribute("type", "password")
            await expect(key_field).to_be_focused()
            await expect(page.get_by_role("status")).to_contain_text("API key needed")
            await shots(page, "7-key-needed")

            await key_field.fill("wrong-key")
            await page.get_by_role("button", name="Unlock").click()
            await expect(page.get_by_role("alert").filter(has_text="refused")).to_be_visible()

            await key_field.fill(KEY)
            await key_field.press("Enter")
            store = card(page, "store")
            await expect(store).to_be_visible()
            await store.get_by_role("button", name="Scan with phone").click()
            await expect(store.locator(".badge")).to_have_text("open")
            assert server.instance(name).state == "open"

            # A reload keeps the key (this tab's sessionStorage).
            await page.reload()
            await expect(card(page, "store").locator(".badge")).to_have_text("open")

        # The key travels in the Authorization header, the event stream's included; in no URL.
        assert all(KEY not in url for url, _ in seen)
        streams = [auth for url, auth in seen if url.endswith("/_sandbox/events")]
        scans = [auth for url, auth in seen if url.endswith("/scan")]
        assert streams[-1] == f"Bearer {KEY}"
        assert "Bearer wrong-key" in streams
        assert scans == [f"Bearer {KEY}"]
