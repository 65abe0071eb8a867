"""The dev phone shows each sent message's ticks as its receipts go out (one: sent, two:
delivered, blue: read), and opening a chat is the customer reading it: the sandbox then sends
the read receipts."""

from __future__ import annotations

import pytest

from tests.conftest import KEY
from tests.test_devphone import (  # noqa: F401
    HAVE_PLAYWRIGHT,
    browser,
    card,
    client,
    open_page,
    root_url,
)
from wachat_async.testing import FakeWachat

if HAVE_PLAYWRIGHT:
    from playwright.async_api import Browser, expect

pytestmark = pytest.mark.skipif(not HAVE_PLAYWRIGHT, reason="needs playwright")

CUSTOMER = "628111222333"


async def test_ticks_follow_the_receipts_and_opening_the_chat_reads_it(
    browser: Browser,  # noqa: F811
) -> None:
    async with FakeWachat(api_keys={KEY}, qr_pool=2) as sandbox, client(sandbox) as wa:
        sandbox.receipt_delay = None  # each step below sends its receipt itself
        name = (await wa.instances.create("ticks")).instance.api_instance_name
        assert name is not None
        sandbox.scan(name)
        sent = await wa.messages.send_text(name, CUSTOMER, "Your order shipped")
        assert sent.message_id is not None
        async with open_page(browser, root_url(sandbox) + "/") as page:
            tick = page.locator("li.msg.out .ticks")
            await expect(tick).to_have_attribute("data-status", "sent")
            sandbox.send_receipt(name, sent.message_id, "delivered")
            await expect(tick).to_have_attribute("data-status", "delivered")
            assert sandbox.sent_messages(name)[0]["status"] == "delivered"
            await card(page, "ticks").get_by_role("button", name="Open chat").click()
            await expect(tick).to_have_attribute("data-status", "read")
            await expect(tick).to_have_class("ticks read")
        assert sandbox.sent_messages(name)[0]["status"] == "read"
        assert sandbox.stats["receipts.read"] == 1
