"""Bot: a router on the signed receiver, with conversations, dedupe and per-chat order.

A delivery goes through two steps. **Taking it in** (before the receiver answers): a message
event is appended to its chat's inbox in the storage, unless its id (instance and WhatsApp
message id) was taken in before, by this process or by a replica with a webhook of its own; a
storage that fails makes the receiver answer 503, so Wachat delivers it again. **Handling**
(after the answer): holding the chat's lock, the inbox is handled oldest first, one message at
a time, each through the router with the chat's conversation. Every process that received the
delivery tries, so a replica that dies after taking a message in leaves it to the others (or to
itself after a restart: :meth:`Bot.start` handles what the inbox still holds). The message a
process was handling when it died is handled again by the next holder of the chat unless it
had begun sending a reply (recorded in the storage just before the first send): that reply may
have gone out, and a duplicate answer cannot be taken back. Events other than messages are
acknowledged and not routed (a :class:`~wachat_async.webhooks.WebhookReceiver` of your own
takes those).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Collection, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import attrs

from .. import _validate as check
from ..errors import InvalidRequestError, WebhookPayloadError
from ..webhooks.events import WEBHOOK_ID_HEADER, MessageReceived, WebhookEvent, parse_event
from .chat import Conversation, Message
from .filters import Filter
from .router import Router
from .storage import MemoryStorage, Storage, StorageError

if TYPE_CHECKING:
    from ..client import AsyncWachat
    from ..sync import Wachat
    from ..webhooks.receiver import WebhookReceiver
    from .adapters import SyncReceiver

__all__ = ["Bot"]

logger = logging.getLogger("wachat_async.bots")

T = TypeVar("T")

#: How often a ``wait_for`` looks at the storage for an answer another replica took in.
POLL_INTERVAL = 0.2


def chat_key(event: MessageReceived) -> str | None:
    """The chat a message belongs to: its instance and its chat id."""
    if event.instance is None or event.remote_jid is None:
        return None
    return f"{event.instance}|{event.remote_jid}"


class _Portal(Protocol):
    """Wachat's loop thread, as the sync adapters use it."""

    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T]) -> T: ...


class _Arrivals:
    """Per chat being waited on, an event set when a message for it is taken in here; an
    entry lives only while someone waits (nothing is left behind by a timed-out wait)."""

    def __init__(self) -> None:
        self._events: dict[str, tuple[asyncio.Event, int]] = {}

    def __len__(self) -> int:
        return len(self._events)

    def notify(self, chat: str) -> None:
        entry = self._events.get(chat)
        if entry is not None:
            entry[0].set()

    def acquire(self, chat: str) -> asyncio.Event:
        event, users = self._events.get(chat) or (asyncio.Event(), 0)
        self._events[chat] = (event, users + 1)
        return event

    def release(self, chat: str) -> None:
        event, users = self._events[chat]
        if users == 1:
            del self._events[chat]
        else:
            self._events[chat] = (event, users - 1)


class Bot:
    """``router`` answering the messages ``client``'s instances receive. ``states``: the
    conversation states handlers may use (filters naming others are refused here);
    ``state_timeout``: seconds after which an idle conversation starts over (None: never).
    With a :class:`~wachat_async.Wachat` client the bot runs on Wachat's loop thread, for
    the sync adapters (:meth:`sync_receiver`)."""

    def __init__(
        self,
        router: Router,
        client: AsyncWachat | Wachat,
        *,
        storage: Storage | None = None,
        states: Collection[str] = (),
        state_timeout: float | None = None,
    ) -> None:
        if not isinstance(router, Router):
            raise InvalidRequestError(f"router must be a Router, got {router!r}")
        self._states = frozenset(check.text("states", s) for s in states)
        router.check(self._states)
        from ..client import AsyncWachat
        from ..sync import Wachat

        self.router = router
        self._portal: _Portal | None = None
        if isinstance(client, Wachat):
            client, self._portal = client._bridge_target()
        elif not isinstance(client, AsyncWachat):
            raise InvalidRequestError(f"client must be an AsyncWachat or a Wachat, got {client!r}")
        self.client: AsyncWachat = client
        self.storage: Storage = MemoryStorage() if storage is None else storage
        self._state_timeout = (
            None if state_timeout is None else check.seconds("state_timeout", state_timeout)
        )
        self._arrivals = _Arrivals()
        self._parsed = _Parsed()
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"Bot({self.router!r}, storage={type(self.storage).__name__})"

    def receiver(
        self, secret: str | bytes | Sequence[str | bytes], **options: Any
    ) -> WebhookReceiver:
        """A :class:`~wachat_async.webhooks.WebhookReceiver` feeding this bot (``options`` as
        the receiver takes them)."""
        from ..webhooks.receiver import WebhookReceiver

        return WebhookReceiver(secret, self.handle, admit=self.admit, **options)

    def sync_receiver(
        self, secret: str | bytes | Sequence[str | bytes], **options: Any
    ) -> SyncReceiver:
        """For Flask and Django (:mod:`wachat_async.bots.adapters`), with a bot built on a
        ``Wachat``: started on Wachat's loop thread, where its handlers run."""
        from .adapters import SyncReceiver

        if self._portal is None:
            raise InvalidRequestError("sync_receiver needs a bot built on a Wachat client")
        self._portal.run(self.start())
        return SyncReceiver(self.receiver(secret, **options), self._portal.loop, self._portal.run)

    async def start(self) -> None:
        """Handle what the storage's inboxes still hold (a crash, a replica gone)."""
        for chat in await self.storage.pending_chats():
            task = asyncio.get_running_loop().create_task(self._drain(chat))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Finish the handling under way and close the storage."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.storage.close()

    # -- the two steps -------------------------------------------------------------------------

    async def admit(self, event: WebhookEvent, body: bytes) -> bool:
        """Take a delivery (the event and the raw body it was parsed from) in: the receiver's
        ``admit``. StorageError when the storage fails."""
        if not isinstance(event, MessageReceived):
            return True
        chat = chat_key(event)
        if chat is None or event.message_id is None:
            logger.warning("a message without instance, chat or id cannot be handled: skipped")
            return False
        delivery_id = f"{event.instance}|{event.message_id}".replace("\n", " ")
        # The body as received (latin-1: any bytes, back exactly), parsed again only by a
        # process that did not parse it itself.
        stamp = "" if event.timestamp is None else repr(event.timestamp)
        item = f"{delivery_id}\n{event.webhook_id or ''}\n{stamp}\n{body.decode('latin-1')}"
        try:
            added = await self.storage.enqueue(chat, delivery_id, item)
        except StorageError as exc:
            logger.error("bot storage failed; delivery not taken in: %s", exc)
            raise
        if added:
            self._parsed.put(delivery_id, event)
            self._arrivals.notify(chat)
        return True

    async def handle(self, event: WebhookEvent) -> None:
        """Handle what the event's chat has waiting (the receiver's handler)."""
        if isinstance(event, MessageReceived) and (chat := chat_key(event)) is not None:
            await self._drain(chat)

    async def feed(self, event: WebhookEvent, body: bytes) -> None:
        """Take in and handle a verified event and its body (for adapters, and tests)."""
        if await self.admit(event, body):
            await self.handle(event)

    # -- handling ------------------------------------------------------------------------------

    async def _drain(self, chat: str) -> None:
        storage = self.storage
        try:
            async with storage.lock(chat):
                left = await storage.unfinished(chat)
                if left is not None:  # its holder died handling it
                    item, began_sending = left
                    if began_sending:
                        logger.warning(
                            "a message in chat %s was being answered when its handler's process "
                            "stopped; not handled again (the reply may have gone out)",
                            chat,
                        )
                    else:
                        await self._process(chat, self._parsed.event(item))
                    await storage.finish(chat)
                while (claimed := await storage.claim(chat)) is not None:
                    await self._process(chat, self._parsed.event(claimed))
                    await storage.finish(chat)
        except StorageError as exc:
            logger.error(
                "bot storage failed in chat %s; what it still holds waits there: %s", chat, exc
            )

    async def _process(self, chat: str, event: MessageReceived) -> None:
        conversation = Conversation(
            chat,
            self.storage,
            states=self._states,
            timeout=self._state_timeout,
            wait_for=self._wait_for,
            snapshot=await self.storage.load(chat),
        )
        await self._route(Message(event, self.client, conversation))

    async def _route(self, message: Message) -> None:
        try:
            if not await self.router._dispatch_within(message, ()):
                logger.debug("no handler for %r", message)
        except StorageError:
            raise
        except Exception:
            logger.exception("bot handler failed for %r", message)

    async def _wait_for(
        self, conversation: Conversation, filter: Filter, timeout: float
    ) -> Message:
        if not isinstance(filter, Filter):
            raise InvalidRequestError(f"wait_for takes a filter (F.text(...), ...), got {filter!r}")
        chat = conversation.chat
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        arrived = self._arrivals.acquire(chat)
        try:
            while True:
                arrived.clear()
                item = await self.storage.claim(chat)
                if item is None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise TimeoutError(f"no answer in chat {chat} within {timeout:g} s")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(arrived.wait(), min(remaining, POLL_INTERVAL))
                    continue
                conversation.began_sending = False  # a new item in progress
                message = Message(self._parsed.event(item), self.client, conversation)
                if (not message.event.from_me or filter.wants_from_me) and filter(message):
                    return message
                await self._route(message)
        finally:
            self._arrivals.release(chat)


class _Parsed:
    """Events this process took in, by delivery id, until it hands them out: handling one it
    parsed itself skips parsing it again. Bounded (another replica may hand out an item this
    one took in): beyond ``capacity`` the oldest are dropped and parsed again if needed."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._events: OrderedDict[str, MessageReceived] = OrderedDict()

    def put(self, delivery_id: str, event: MessageReceived) -> None:
        self._events[delivery_id] = event
        if len(self._events) > self._capacity:
            self._events.popitem(last=False)

    def event(self, item: str) -> MessageReceived:
        """The event an inbox item (``delivery id, webhook id, timestamp, body``, one a line)
        holds."""
        delivery_id, _, saved = item.partition("\n")
        event = self._events.pop(delivery_id, None)
        return _event(saved) if event is None else event


def _event(saved: str) -> MessageReceived:
    """The event saved in an inbox item (as parsed when it arrived)."""
    webhook_id, stamp, body = saved.split("\n", 2)
    try:
        event = parse_event(
            {WEBHOOK_ID_HEADER: webhook_id} if webhook_id else {}, body.encode("latin-1")
        )
    except WebhookPayloadError as exc:
        raise StorageError(f"an inbox item is unreadable: {exc}") from None
    if not isinstance(event, MessageReceived):  # only message events are taken in
        raise StorageError("an inbox item is not a message: the storage holds foreign data")
    return attrs.evolve(event, timestamp=float(stamp) if stamp else None)
