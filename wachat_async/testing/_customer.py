"""Customer: talk to your bot through the sandbox as a customer would, and check its answers.

::

    customer = Customer(server.control_url, "t1_ab12cd34_store", "628111222333")
    await customer.send("menu")
    reply = await customer.expect_reply()       # the next message the bot sent this customer
    assert "track" in reply.options
    await customer.choose("track")              # picks that row (or button)

``async with customer.serving(bot):`` serves an async :class:`~wachat_async.bots.Bot` and
points a webhook of this instance at it, for the block.

A failed expectation raises AssertionError showing the conversation so far. It speaks only
HTTP to the sandbox's control API, so the bot may run anywhere: in the test's loop, on a thread
(a sync adapter), or in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs

if TYPE_CHECKING:
    from ..bots import Bot

__all__ = ["Customer", "Reply"]

#: How often the sandbox is asked for the bot's new messages while a reply is awaited.
_POLL = 0.02


@attrs.frozen
class Reply:
    """A message the bot sent the customer: ``kind`` is ``text``, ``list``, ``buttons``,
    ``media``, ``location`` or the send path's last part; ``options`` the row or button ids
    offered; ``body`` the whole send body."""

    kind: str
    text: str
    options: tuple[str, ...]
    body: dict[str, Any] = attrs.field(repr=False)


def _reply(record: dict[str, Any]) -> Reply:
    body: dict[str, Any] = record["body"]
    path: str = record["path"]
    interactive = body.get("interactive") or {}
    if path == "/send/list":
        rows = [r for s in interactive.get("sections", []) for r in s.get("rows", [])]
        titles = " | ".join(r.get("title", "") for r in rows)
        return Reply(
            "list",
            f"{interactive.get('text', '')} [{titles}]",
            tuple(str(r.get("rowId")) for r in rows),
            body,
        )
    if path == "/send/button":
        buttons = interactive.get("buttons", [])
        labels = " | ".join(b.get("text", "") for b in buttons)
        return Reply(
            "buttons",
            f"{interactive.get('text', '')} [{labels}]",
            tuple(b["id"] for b in buttons),
            body,
        )
    if path == "/send-location":
        return Reply("location", str(body.get("name") or body.get("address") or ""), (), body)
    if path == "/send/media":
        return Reply("media", str(body.get("message") or body.get("mediaUrl")), (), body)
    return Reply("text", str(body.get("message", "")), (), body)


class Customer:
    """One customer (``number``) of one instance, through the control API at ``control_url``
    (``FakeWachat.control_url``, or ``http://127.0.0.1:<port>/_sandbox`` of ``wachat
    sandbox``). ``timeout``: how long :meth:`expect_reply` waits by default."""

    def __init__(
        self, control_url: str, instance: str, number: str, *, timeout: float = 10.0
    ) -> None:
        self.control_url = control_url.rstrip("/")
        self.instance = instance
        self.number = number
        self.timeout = timeout
        #: The conversation so far: ``("customer" | "bot", text)`` each.
        self.transcript: list[tuple[str, str]] = []
        self._seen: int | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Customer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @contextlib.asynccontextmanager
    async def serving(self, bot: Bot) -> AsyncIterator[str]:
        """Serve ``bot`` on a free loopback port with a webhook of its own on this customer's
        instance (registered through the bot's client), for the block; yields its URL. The
        handlers under way finish before it stops."""
        from aiohttp import web

        secret = secrets.token_urlsafe(32)
        receiver = bot.receiver(secret)
        runner = web.AppRunner(receiver.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}/bot"
        hook = await bot.client.webhooks.upsert(
            url, instance_name=self.instance, secret=secret, events=["messages.upsert"]
        )
        try:
            await bot.start()
            yield url
        finally:
            await bot.client.webhooks.upsert(url, id=hook.id, enabled=False)
            await runner.cleanup()  # drains the receiver's handlers

    def conversation(self) -> str:
        """The conversation so far, one line per message."""
        lines = [f"  {who:>8}: {text}" for who, text in self.transcript]
        return "\n".join(lines) or "  (nothing yet)"

    async def send(self, text: str) -> str:
        """Send ``text`` to the bot; the message's id."""
        return await self._say({"from": self.number, "text": text}, text)

    async def choose(self, selected_id: str) -> str:
        """Pick the list row or press the button ``selected_id`` of what the bot sent last."""
        return await self._say(
            {"from": self.number, "selected_id": selected_id}, f"<{selected_id}>"
        )

    async def expect_reply(self, timeout: float | None = None) -> Reply:
        """The next message the bot sends this customer (AssertionError after ``timeout``)."""
        wait = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            mine = await self._sent_to_me()
            seen = self._seen or 0
            if len(mine) > seen:
                self._seen = seen + 1
                reply = _reply(mine[seen])
                self.transcript.append(("bot", f"[{reply.kind}] {reply.text}"))
                return reply
            if loop.time() >= deadline:
                raise AssertionError(
                    f"the bot sent {self.number} nothing within {wait:g} s; the conversation "
                    f"so far:\n{self.conversation()}"
                )
            await asyncio.sleep(_POLL)

    async def expect_no_more(self) -> None:
        """Fail if the bot sent this customer anything not yet expected."""
        extra = (await self._sent_to_me())[self._seen or 0 :]
        if extra:
            texts = "; ".join(_reply(r).text for r in extra)
            raise AssertionError(
                f"the bot sent {len(extra)} more message(s) than expected ({texts}); the "
                f"conversation so far:\n{self.conversation()}"
            )

    async def _say(self, body: dict[str, Any], shown: str) -> str:
        if self._seen is None:
            self._seen = len(await self._sent_to_me())  # answers start after this point
        self.transcript.append(("customer", shown))
        answer = await self._request("POST", f"/instances/{self.instance}/messages", body)
        return str(answer["id"])

    async def _sent_to_me(self) -> list[dict[str, Any]]:
        answer = await self._request("GET", f"/instances/{self.instance}/sent")
        return [r for r in answer["sent"] if r["body"].get("number") == self.number]

    async def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.request(method, self.control_url + path, json=body) as resp:
            answer: dict[str, Any] = await resp.json(content_type=None)
        if not answer.get("success"):
            raise AssertionError(
                f"the sandbox refused {method} {path}: {answer.get('error')}; the conversation "
                f"so far:\n{self.conversation()}"
            )
        return answer
