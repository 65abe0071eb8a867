"""The dev phone in a real browser, as a newcomer meets it: user text isolated (a right-to-left
override in a push name does not reverse the number beside it), WhatsApp's *bold* _italic_
~strike~ ```mono``` drawn (as DOM nodes, never HTML), media that cannot load shown as a
placeholder with its URL, new instances on top, connected cards without a Scan pill, the chat
within reach at phone width, deliveries with their URL and API name, and list rows and reply
buttons that answer with their ids. Screenshots go to ``/tmp/devphone-ux``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KEY, serving
from tests.test_devphone import (  # noqa: F401
    HAVE_PLAYWRIGHT,
    browser,
    card,
    client,
    open_page,
    root_url,
)
from wachat_async.models import ListRow, ListSection, ReplyButton
from wachat_async.testing import FakeWachat
from wachat_async.testing._deliveries import Delivery
from wachat_async.webhooks import WebhookReceiver

if HAVE_PLAYWRIGHT:
    from playwright.async_api import Browser, Page, Route, expect

CUSTOMER = "628111222333"
SHOTS = Path("/tmp/devphone-ux")
PHONE = {"width": 390, "height": 844}


@pytest.fixture
async def sandbox() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys={KEY}, qr_pool=4) as server:
        yield server


async def shoot(page: Page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


DIGITS_LEFT_TO_RIGHT = """(el) => {
  // The x of each character of the element's text, in the order the characters are stored.
  const node = el.firstChild;
  const xs = [];
  for (let i = 0; i < node.length; i++) {
    const range = document.createRange();
    range.setStart(node, i);
    range.setEnd(node, i + 1);
    xs.push(range.getBoundingClientRect().left);
  }
  return xs;
}"""


async def test_a_right_to_left_override_in_a_push_name_leaves_the_number_in_order(
    sandbox: FakeWachat,
    browser: Browser,  # noqa: F811
) -> None:
    async with client(sandbox) as wa:
        name = (await wa.instances.create("store\u202e")).instance.api_instance_name
    sandbox.scan(name, profile_name="Toko\u202e")
    sandbox.receive_message(name, CUSTOMER, "hi\u202e there", push_name="Ali\u202e")
    async with open_page(browser, root_url(sandbox) + "/") as page:
        sender = page.locator("li.msg.in .sender")
        await expect(sender).to_contain_text(CUSTOMER)
        number = sender.locator(".number")
        await expect(number).to_have_text(f"+{CUSTOMER}")
        xs = await number.evaluate(DIGITS_LEFT_TO_RIGHT)
        assert xs == sorted(xs)
        assert len(set(xs)) == len(xs)  # each digit right of the one before
        # The whole line reads: the push name, then the number (not the number reversed
        # and pulled before it).
        name_box = await sender.locator(".push-name").bounding_box()
        number_box = await number.bounding_box()
        assert name_box is not None
        assert number_box is not None
        assert name_box["x"] < number_box["x"]
        # Every piece of user text is isolated, wherever it is.
        styles = await page.evaluate(
            """() => [...document.querySelectorAll('bdi, .number, .bubble .text')]
                  .map(e => getComputedStyle(e).unicodeBidi)"""
        )
        assert len(styles) >= 6
        assert set(styles) == {"isolate"}
        # The chat's heading, beside "Chat: ", and the card's state line hold isolated names.
        assert await page.locator("#chat-heading bdi").count() == 1
        assert await card(page, "store\u202e").locator(".state-detail bdi").count() == 2
        await shoot(page, "bidi")


async def test_whatsapp_formatting_is_drawn_and_text_stays_text(
    sandbox: FakeWachat,
    browser: Browser,  # noqa: F811
) -> None:
    text = (
        "*bold* and _italic_ and ~struck~ and ```a = b*c*d``` and *_both_*; "
        "not: a*b*c, 2*3*4, * spaced *, snake_case_name; <b>tag</b>"
    )
    async with client(sandbox) as wa:
        name = (await wa.instances.create("store")).instance.api_instance_name
        sandbox.scan(name)
        await wa.messages.send_text(name, CUSTOMER, text)
    async with open_page(browser, root_url(sandbox) + "/") as page:
        bubble = page.locator("li.msg.out .text")
        await expect(bubble).to_have_count(1)
        await expect(bubble.locator("strong")).to_have_text(["bold", "both"])
        await expect(bubble.locator("em")).to_have_text(["italic", "both"])
        await expect(bubble.locator("s")).to_have_text(["struck"])
        await expect(bubble.locator("code")).to_have_text(["a = b*c*d"])
        await expect(bubble.locator("strong > em")).to_have_text(["both"])
        shown = await bubble.text_content()
        assert shown is not None
        for literal in ("a*b*c", "2*3*4", "* spaced *", "snake_case_name", "<b>tag</b>"):
            assert literal in shown
        assert await bubble.locator("b").count() == 0
        await shoot(page, "formatting")


async def test_media_that_cannot_load_shows_its_url(
    sandbox: FakeWachat,
    browser: Browser,  # noqa: F811
) -> None:
    gone = f"{root_url(sandbox)}/nowhere/promo.png"  # answers 404
    async with client(sandbox) as wa:
        name = (await wa.instances.create("store")).instance.api_instance_name
        sandbox.scan(name)
        await wa.messages.send_media(name, CUSTOMER, gone, media_type="image", caption="Promo!")
        await wa.messages.send_media(
            name, CUSTOMER, "https://files.example/menu.mp4", media_type="video"
        )
    async with open_page(browser, root_url(sandbox) + "/") as page:
        sent = page.locator("li.msg.out")
        await expect(sent).to_have_count(2)
        image = sent.nth(0)
        await expect(image.locator(".media-url")).to_have_text(gone)
        await expect(image.locator("img")).to_have_count(0)  # no broken-image box
        await expect(image).to_contain_text("promo.png")
        await expect(image).to_contain_text("Promo!")
        await expect(sent.nth(1).locator(".media-url")).to_have_text(
            "https://files.example/menu.mp4"
        )
        await shoot(page, "media")


async def test_new_instances_come_on_top_and_connected_cards_have_no_scan(
    sandbox: FakeWachat,
    browser: Browser,  # noqa: F811
) -> None:
    async with client(sandbox) as wa:
        for store in ("first", "second"):
            await wa.instances.create(store)
        async with open_page(browser, root_url(sandbox) + "/") as page:
            headings = page.locator("li.card h3")
            await expect(headings).to_have_text(["second", "first"])
            third = (await wa.instances.create("third")).instance.api_instance_name
            await expect(headings).to_have_text(["third", "second", "first"])
            await expect(page.locator("#instance-count")).to_have_text("3")
            sandbox.scan(third)
            connected = card(page, "third")
            await expect(connected.locator(".badge")).to_have_text("open")
            await expect(connected.get_by_role("button", name="Scan with phone")).to_be_hidden()
            await expect(connected.get_by_role("button", name="Disconnect")).to_be_visible()
            waiting = card(page, "first")
            await expect(waiting.get_by_role("button", name="Scan with phone")).to_be_visible()
            await expect(waiting.get_by_role("button", name="Disconnect")).to_be_hidden()


async def test_at_phone_width_the_chat_is_near_whatever_the_number_of_cards(
    sandbox: FakeWachat,
    browser: Browser,  # noqa: F811
) -> None:
    async with client(sandbox) as wa:
        for i in range(20):
            last = (await wa.instances.create(f"store_{i:02}")).instance.api_instance_name
    sandbox.receive_message(last, CUSTOMER, "Is the shop open?", push_name="Budi")
    async with open_page(browser, root_url(sandbox) + "/", **PHONE) as page:
        await expect(page.locator("li.card")).to_have_count(20)
        chat = page.locator("#chat")
        box = await chat.bounding_box()
        assert box is not None
        assert box["y"] < PHONE["height"]  # on the first screen, past no more than 46vh of cards
        await shoot(page, "phone")
        toggle = page.get_by_role("button", name="Hide cards")
        await toggle.click()
        await expect(page.locator("li.card").first).to_be_hidden()
        folded = await chat.bounding_box()
        assert folded is not None
        assert folded["y"] < 200
        await expect(page.get_by_role("log").locator("li.msg.in")).to_be_in_viewport()
        await shoot(page, "phone-folded")
        await page.get_by_role("button", name="Show cards").click()
        await expect(page.locator("li.card").first).to_be_visible()
        # "Open chat" on a card brings the chat up.
        await card(page, "store_00").get_by_role("button", name="Open chat").click()
        await expect(page.get_by_role("heading", name="Chat: store_00")).to_be_in_viewport()


async def test_deliveries_show_their_url_and_api_name(
    sandbox: FakeWachat,
    browser: Browser,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The record carries the URL it was delivered to; shown only when it is there.
    as_json = Delivery.as_json
    delivered_to = {"url": ""}
    monkeypatch.setattr(Delivery, "as_json", lambda self: as_json(self) | delivered_to)

    async def on_event(event: object) -> None:
        pass

    async with (
        serving(WebhookReceiver("whsec_ux_secret", on_event).app()) as hook_url,
        client(sandbox) as wa,
    ):
        delivered_to["url"] = hook_url + "/wachat"
        name = (await wa.instances.create("store")).instance.api_instance_name
        await wa.webhooks.upsert(
            f"{hook_url}/", instance_name=name, secret="whsec_ux_secret", events=["messages.upsert"]
        )
        sandbox.scan(name)
        sandbox.receive_message(name, CUSTOMER, "hi")
        await sandbox.flush_deliveries()
        async with open_page(browser, root_url(sandbox) + "/") as page:
            row = page.locator("#delivery-rows tr").filter(has_text="messages.upsert")
            await expect(row).to_have_count(1)
            await expect(row.locator(".instance-name")).to_have_text("store")
            await expect(row.locator(".instance-api")).to_have_text(name)
            await expect(row.locator(".hook-url")).to_have_text(f"→ {hook_url}/wachat")
            await shoot(page, "deliveries")


async def test_list_rows_and_reply_buttons_answer_with_their_ids(
    sandbox: FakeWachat,
    browser: Browser,  # noqa: F811
) -> None:
    async with client(sandbox) as wa:
        name = (await wa.instances.create("store")).instance.api_instance_name
        sandbox.scan(name)
        await wa.messages.send_list(
            name,
            CUSTOMER,
            title="Menu",
            text="How can we help?",
            button_text="Options",
            sections=[
                ListSection("Orders", [ListRow("Track my order", "Where is it?", "track")]),
                ListSection("Other", [ListRow("Talk to a person")]),
            ],
        )
        await wa.messages.send_buttons(
            name,
            CUSTOMER,
            text="Deliver today?",
            buttons=[ReplyButton("yes_today", "Yes"), ReplyButton("no_later", "Later")],
        )
    posted: list[Any] = []

    async def answer(route: Route) -> None:
        posted.append(route.request.post_data_json)
        await route.fulfill(
            status=200, content_type="application/json", body=json.dumps({"success": True})
        )

    async with open_page(browser, root_url(sandbox) + "/") as page:
        await page.route(f"**/_sandbox/instances/{name}/messages", answer)
        menu = page.locator("li.msg.out").nth(0)
        await menu.get_by_role("button", name="Options").click()
        await menu.get_by_role("button", name="Track my order").click()
        await menu.get_by_role("button", name="Talk to a person").click()
        await page.locator("li.msg.out").nth(1).get_by_role("button", name="Later").click()
        async with asyncio.timeout(10):
            while len(posted) < 3:
                await asyncio.sleep(0.01)
        await expect(page.locator("#reply-error")).to_be_empty()
        await page.set_viewport_size({"width": 1280, "height": 800})
        await shoot(page, "desktop")
    assert posted == [
        {"from": CUSTOMER, "selected_id": "track"},
        {"from": CUSTOMER, "selected_id": "Talk to a person"},  # a row without an id
        {"from": CUSTOMER, "selected_id": "no_later"},
    ]
