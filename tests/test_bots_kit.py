"""The conversation test kit as a user's suite uses it: the plugin's ``customer`` fixture against
an async bot and a sync (Flask, over Wachat) one, and failures that show the conversation."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from wsgiref.simple_server import make_server

import pytest

from tests.conftest import serving
from tests.test_bots_adapters import echo_router, flask_app
from wachat_async import AsyncWachat, Wachat
from wachat_async.bots import Bot
from wachat_async.bots.adapters import flask_view
from wachat_async.testing import Customer, FakeWachat
from wachat_async.testing.pytest_plugin import TEST_KEY


async def test_customer_fixture_with_an_async_bot(customer: Customer, wachat: AsyncWachat) -> None:
    secret = secrets.token_urlsafe(16)
    receiver = Bot(echo_router(), wachat).receiver(secret)
    async with serving(receiver.app()) as url:
        await wachat.webhooks.upsert(url + "/bot", instance_name=customer.instance, secret=secret)
        await customer.send("ping")
        reply = await customer.expect_reply()
        assert reply.text == "pong"
        assert reply.kind == "text"
        await customer.send("nothing to see")
        assert (await customer.expect_reply()).text == "echo nothing to see"
        with pytest.raises(AssertionError) as caught:
            await customer.expect_reply(timeout=0.2)  # one reply per message: none comes
        shown = str(caught.value)
        assert "within 0.2 s" in shown
        assert "customer: ping" in shown
        assert "bot: [text] pong" in shown
        assert "customer: nothing to see" in shown
        with pytest.raises(AssertionError, match="sent no list or buttons"):
            await customer.choose("track")
        await receiver.drain()


@pytest.fixture
def wsgi_thread() -> Iterator[list[object]]:
    servers: list[object] = []
    yield servers
    for httpd in servers:
        httpd.shutdown()  # type: ignore[attr-defined]
        httpd.server_close()  # type: ignore[attr-defined]


async def test_customer_fixture_with_a_sync_bot(
    customer: Customer, wachat_server: FakeWachat, wsgi_thread: list[object]
) -> None:
    secret = secrets.token_urlsafe(16)
    wa = Wachat(TEST_KEY, base_url=wachat_server.base_url)
    try:
        # Built where a Flask app builds it: in a thread without an event loop.
        receiver = await asyncio.to_thread(Bot(echo_router(), wa).sync_receiver, secret)
        httpd = make_server("127.0.0.1", 0, flask_app(flask_view(receiver)))
        wsgi_thread.append(httpd)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_port}/wachat"
        await wachat_server_upsert(wachat_server, url, customer.instance, secret)
        await customer.send("hello")
        assert (await customer.expect_reply()).text == "echo hello"
    finally:
        await asyncio.to_thread(wa.close)


async def wachat_server_upsert(server: FakeWachat, url: str, instance: str, secret: str) -> None:
    async with AsyncWachat(TEST_KEY, base_url=server.base_url) as wa:
        await wa.webhooks.upsert(url, instance_name=instance, secret=secret)
