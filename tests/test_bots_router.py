"""The bot layer end to end: the sandbox delivers signed events to a Bot served on loopback, the
router picks the handler, replies go back through the instance; list and button choices;
filters, order, middlewares, errors, build-time refusals; conversation state and wait_for."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import serving
from wachat_async import AsyncWachat, InvalidRequestError, ListRow, ListSection
from wachat_async.bots import (
    Bot,
    Conversation,
    F,
    Filter,
    MemoryStorage,
    Message,
    Router,
    SQLiteStorage,
    Storage,
    StorageError,
)
from wachat_async.testing import Customer, FakeWachat
from wachat_async.webhooks import ButtonReply, ListReply, MessageKind, MessageReceived, parse_event

NUMBER = "628111222333"


def upsert(message: dict[str, Any], **key: Any) -> MessageReceived:
    payload = {
        "event": "messages.upsert",
        "instance": "t1_abcd1234_store",
        "data": {
            "key": {"remoteJid": f"{NUMBER}@s.whatsapp.net", "fromMe": False, "id": "X1", **key},
            "message": message,
        },
    }
    event = parse_event({}, json.dumps(payload))
    assert isinstance(event, MessageReceived)
    return event


async def started_instance(server: FakeWachat, wa: AsyncWachat) -> str:
    created = await wa.instances.create("store")
    name = created.instance.api_instance_name
    server.scan(name)
    return name


@pytest.fixture
async def instance(server: FakeWachat, wa: AsyncWachat) -> str:
    return await started_instance(server, wa)


async def run_bot(
    server: FakeWachat, wa: AsyncWachat, name: str, bot: Bot, path: str = "/wachat"
) -> AsyncIterator[Customer]:
    secret = secrets.token_urlsafe(16)
    receiver = bot.receiver(secret)
    async with serving(receiver.app()) as url:
        await wa.webhooks.upsert(
            url + path, instance_name=name, secret=secret, events=["messages.upsert"]
        )
        async with Customer(server.control_url, name, NUMBER) as customer:
            yield customer
        await receiver.drain()


def menu_router() -> Router:
    router = Router()

    @router.message(F.text("menu", ignore_case=True))
    async def menu(message: Message) -> None:
        await message.reply_list(
            title="Menu",
            text="How can we help?",
            button_text="Open",
            sections=[
                ListSection(
                    "Options", [ListRow("Track", row_id="track"), ListRow("Human", row_id="human")]
                )
            ],
        )

    @router.message(F.list_reply("track"))
    async def track(message: Message) -> None:
        await message.reply(f"chose {message.selected_id}", delay=0)

    @router.message(F.command("buttons"))
    async def buttons(message: Message) -> None:
        await message.reply_buttons(text="Sure?", buttons=["Yes", "No"])

    @router.message(F.button_reply("2"))
    async def said_no(event: MessageReceived, message: Message) -> None:
        assert isinstance(event, ButtonReply)
        await message.reply(f"button {event.selected_id} {event.text}")

    @router.fallback
    async def other(message: Message) -> None:
        await message.reply(f"echo {message.text}")

    return router


async def test_menu_list_choice_and_buttons_over_the_sandbox(
    server: FakeWachat, wa: AsyncWachat, instance: str
) -> None:
    async for customer in run_bot(server, wa, instance, Bot(menu_router(), wa)):
        await customer.send("MENU ")
        reply = await customer.expect_reply()
        assert reply.kind == "list"
        assert reply.options == ("track", "human")
        await customer.choose("track")
        assert (await customer.expect_reply()).text == "chose track"
        await customer.send("/buttons now")
        assert (await customer.expect_reply()).options == ("1", "2")
        await customer.choose("2")
        assert (await customer.expect_reply()).text == "button 2 No"
        await customer.send("hello")
        assert (await customer.expect_reply()).text == "echo hello"
        await customer.expect_no_more()
    sent = server.sent_messages(instance)
    assert sent[1]["body"]["delay"] == 0  # the typing delay reaches the API
    assert all(d.url.endswith("/wachat") and d.status == 200 for d in server.deliveries)


async def test_a_choice_nobody_offered_is_refused_by_the_sandbox(
    server: FakeWachat, wa: AsyncWachat, instance: str
) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{server.control_url}/instances/{instance}/messages"
        async with http.post(url, json={"from": NUMBER, "selected_id": "track"}) as resp:
            assert resp.status == 404
            assert "sent no list or buttons" in (await resp.json())["error"]
        await wa.messages.send_buttons(instance, NUMBER, text="?", buttons=["a", "b"])
        async with http.post(url, json={"from": NUMBER, "selected_id": "9"}) as resp:
            assert resp.status == 400
            assert "offered: 1, 2" in (await resp.json())["error"]
        async with http.post(url, json={"from": NUMBER, "selected_id": "1", "text": "x"}) as resp:
            assert resp.status == 400


async def test_every_webhook_receives_each_delivery(
    server: FakeWachat, wa: AsyncWachat, instance: str
) -> None:
    got: list[list[str]] = [[], []]
    urls = []
    for i in range(2):
        router = Router()

        @router.message()
        async def seen(message: Message, i: int = i) -> None:
            got[i].append(message.text or "")

        urls.append(Bot(router, wa).receiver("s" * 16))
    async with serving(urls[0].app()) as one, serving(urls[1].app()) as two:
        for base in (one, two):
            await wa.webhooks.upsert(base + "/hook", instance_name=instance, secret="s" * 16)
        server.receive_message(instance, NUMBER, "fan")
        await server.flush_deliveries()
        for receiver in urls:
            await receiver.drain()
    assert got == [["fan"], ["fan"]]
    assert sorted(d.url for d in server.deliveries if d.event == "messages.upsert") == sorted(
        [one + "/hook", two + "/hook"]
    )


def test_events_carry_the_chosen_row_or_button() -> None:
    listed = upsert(
        {"listResponseMessage": {"title": "Track", "singleSelectReply": {"selectedRowId": "track"}}}
    )
    assert isinstance(listed, ListReply)
    assert listed.selected_id == "track"
    assert listed.kind is MessageKind.LIST_REPLY
    assert listed.text == "Track"
    pressed = upsert(
        {"buttonsResponseMessage": {"selectedButtonId": "b1", "selectedDisplayText": "Yes"}}
    )
    assert isinstance(pressed, ButtonReply)
    assert (pressed.selected_id, pressed.text) == ("b1", "Yes")
    assert upsert({"imageMessage": {"caption": "c"}}).kind is MessageKind.MEDIA
    assert upsert({"locationMessage": {"degreesLatitude": 1}}).kind is MessageKind.LOCATION
    group = upsert(
        {"conversation": "hi"},
        remoteJid="120363025246125888@g.us",
        participant=f"{NUMBER}@s.whatsapp.net",
    )
    assert group.is_group
    assert group.sender_number == NUMBER
    broken = upsert({"listResponseMessage": {"singleSelectReply": 7}})
    assert isinstance(broken, ListReply)
    assert broken.selected_id is None


async def never_waits(conversation: Conversation, filter: Filter, timeout: float) -> Message:
    raise AssertionError("not waited on here")


async def dispatched(
    router: Router, event: MessageReceived, wa: AsyncWachat, state: str | None = None
) -> bool:
    snapshot = json.dumps({"state": state, "data": {}}) if state else None
    conversation = Conversation(
        "c",
        MemoryStorage(),
        states={"s1"},
        timeout=None,
        wait_for=never_waits,
        snapshot=snapshot,
    )
    return await router.dispatch(Message(event, wa, conversation))


async def test_filters_compose_and_first_match_wins_in_registration_order(wa: AsyncWachat) -> None:
    calls: list[str] = []
    router = Router()
    sub = Router("sub")

    @router.message(F.regex(r"^A-\d+$") & ~F.text("A-0"))
    async def order(message: Message) -> None:
        calls.append("order")

    router.include(sub)

    @sub.message(F.text("hi") | F.text("hello", ignore_case=True))
    async def hi(message: Message) -> None:
        calls.append("hi")

    @router.message(F.text("hi"))
    async def never(message: Message) -> None:  # registered after the sub-router: shadowed
        calls.append("never")

    @router.message(
        F.sender(f"+{NUMBER}") & F.instance("t1_abcd1234_store") & F.private & F.state("s1")
    )
    async def stateful(message: Message) -> None:
        calls.append("stateful")

    @router.message(F.from_me)
    async def mine(message: Message) -> None:
        calls.append("mine")

    def text(value: str, **key: Any) -> MessageReceived:
        return upsert({"conversation": value}, **key)

    assert await dispatched(router, text("A-17"), wa)
    assert await dispatched(router, text("HELLO"), wa)
    assert await dispatched(router, text("hi"), wa)
    assert not await dispatched(router, text("A-0"), wa)
    assert await dispatched(router, text("x"), wa, state="s1")
    assert await dispatched(router, text("A-17", fromMe=True), wa)  # only F.from_me sees it
    assert calls == ["order", "hi", "hi", "stateful", "mine"]


async def test_middlewares_wrap_and_errors_go_to_the_error_handler(wa: AsyncWachat) -> None:
    trail: list[str] = []
    router = Router()

    @router.outer_middleware
    async def outer(message: Message, call_next: Any) -> None:
        trail.append("outer")
        if message.text != "drop":
            await call_next()

    @router.middleware
    async def inner(message: Message, call_next: Any) -> None:
        trail.append("inner>")
        await call_next()
        trail.append("<inner")

    @router.message(F.text("boom"))
    async def boom(message: Message) -> None:
        raise RuntimeError("handler broke")

    @router.message()
    async def ok(message: Message) -> None:
        trail.append("ok")

    @router.error
    async def on_error(error: Exception, message: Message) -> None:
        trail.append(f"error {error} on {message.text}")

    assert await dispatched(router, upsert({"conversation": "fine"}), wa)
    assert not await dispatched(router, upsert({"conversation": "drop"}), wa)
    assert await dispatched(router, upsert({"conversation": "boom"}), wa)
    assert trail == [
        "outer",
        "inner>",
        "ok",
        "<inner",
        "outer",
        "outer",
        "inner>",
        "error handler broke on boom",
    ]


async def test_bad_filters_handlers_and_states_are_refused_when_built(wa: AsyncWachat) -> None:
    with pytest.raises(InvalidRequestError, match=r"F\.regex"):
        F.regex("(unclosed")
    with pytest.raises(InvalidRequestError, match="digits"):
        F.sender("not a number")
    with pytest.raises(InvalidRequestError, match=r"F\.kind must be one of"):
        F.kind("txt")
    with pytest.raises(InvalidRequestError, match="single words"):
        F.command("two words")
    with pytest.raises(InvalidRequestError, match="filters compose"):
        F.text("a") & "b"  # type: ignore[operator]
    router = Router()
    with pytest.raises(InvalidRequestError, match="asks for 'db'"):

        @router.message()
        async def wants_db(message: Message, db: object) -> None: ...

    with pytest.raises(InvalidRequestError, match="async function"):
        router.message()(lambda message: None)  # type: ignore[type-var]

    @router.message(F.state("awaiting_ordr"))
    async def typo(message: Message) -> None: ...

    with pytest.raises(InvalidRequestError, match=r"unknown state.*awaiting_ordr.*awaiting_order"):
        Bot(router, wa, states={"awaiting_order"})
    with pytest.raises(InvalidRequestError, match="inside itself"):
        router.include(router)


async def test_state_data_timeout_and_one_handler_at_a_time(
    server: FakeWachat, wa: AsyncWachat, instance: str
) -> None:
    router = Router()
    running = 0
    overlap = False

    @router.message(F.text("track"))
    async def ask(message: Message, conversation: Conversation) -> None:
        await conversation.set_state("awaiting_order", asked=1)
        await message.reply("Your order number?")

    @router.message(F.state("awaiting_order"))
    async def answer(message: Message, conversation: Conversation) -> None:
        nonlocal running, overlap
        running += 1
        overlap = overlap or running > 1
        await asyncio.sleep(0)
        await message.reply(f"order {message.text} (asked {conversation.data['asked']})")
        await conversation.clear()
        running -= 1

    @router.message()
    async def other(message: Message, conversation: Conversation) -> None:
        with pytest.raises(InvalidRequestError, match="unknown state"):
            await conversation.set_state("nope")
        await message.reply(f"other {message.text}")

    storage = MemoryStorage()
    async for customer in run_bot(
        server, wa, instance, Bot(router, wa, storage=storage, states={"awaiting_order"})
    ):
        await customer.send("track")
        assert (await customer.expect_reply()).text == "Your order number?"
        await customer.send("A-17")
        assert (await customer.expect_reply()).text == "order A-17 (asked 1)"
        await customer.send("A-18")
        assert (await customer.expect_reply()).text == "other A-18"
        # Many at once in one chat: handled one at a time, in arrival order.
        await customer.send("track")
        await customer.expect_reply()
        for text in ["1", "2", "3"]:
            await customer.send(text)
        texts = [(await customer.expect_reply()).text for _ in range(3)]
        assert texts == ["order 1 (asked 1)", "other 2", "other 3"]
    assert not overlap
    assert storage.sizes()["locks"] == 0
    assert storage.sizes()["inboxes"] == 0


async def test_state_times_out(wa: AsyncWachat) -> None:
    storage = MemoryStorage()
    conversation = Conversation(
        "c", storage, states={"s"}, timeout=None, wait_for=never_waits, snapshot=None
    )
    await conversation.set_state("s", timeout=0.0)
    assert await storage.load("c") is None
    await conversation.set_state("s", timeout=3600)
    assert json.loads(await storage.load("c") or "")["state"] == "s"


async def test_wait_for_asks_and_gets_the_answer_and_leaves_nothing_on_timeout(
    server: FakeWachat, wa: AsyncWachat, instance: str
) -> None:
    router = Router()

    @router.message(F.text("name?"))
    async def ask(message: Message, conversation: Conversation) -> None:
        await message.reply("What is your name?")
        try:
            answer = await conversation.wait_for(F.regex(r"^[A-Z]"), timeout=30)
        except TimeoutError:
            await message.reply("too late")
            return
        await message.reply(f"Hello {answer.text}")

    @router.message(F.text("quick?"))
    async def ask_briefly(message: Message, conversation: Conversation) -> None:
        try:
            await conversation.wait_for(F.any, timeout=0.05)
        except TimeoutError:
            await message.reply("too late")

    @router.message()
    async def other(message: Message) -> None:
        await message.reply(f"meanwhile {message.text}")

    bot = Bot(router, wa)
    async for customer in run_bot(server, wa, instance, bot):
        await customer.send("name?")
        await customer.expect_reply()
        await customer.send("lowercase")  # not an answer: goes through the router
        assert (await customer.expect_reply()).text == "meanwhile lowercase"
        await customer.send("Ada")
        assert (await customer.expect_reply()).text == "Hello Ada"
        await customer.send("quick?")
        assert (await customer.expect_reply()).text == "too late"
        await customer.send("later")
        assert (await customer.expect_reply()).text == "meanwhile later"
    assert len(bot._arrivals) == 0
    assert isinstance(bot.storage, MemoryStorage)
    assert bot.storage.sizes()["inboxes"] == 0


async def test_a_storage_that_is_down_answers_503_and_a_handler_that_raises_still_acks(
    server: FakeWachat, wa: AsyncWachat, instance: str
) -> None:
    class Down(MemoryStorage):
        down = True

        async def enqueue(self, chat: str, delivery_id: str, item: str) -> bool:
            if self.down:
                raise StorageError("storage unreachable")
            return await super().enqueue(chat, delivery_id, item)

    router = Router()

    @router.message(F.text("boom"))
    async def boom(message: Message) -> None:
        raise RuntimeError("broken handler")

    @router.message()
    async def ok(message: Message) -> None:
        await message.reply("fine")

    storage = Down()
    async for customer in run_bot(server, wa, instance, Bot(router, wa, storage=storage)):
        await customer.send("first")
        await server.flush_deliveries()
        assert server.deliveries[-1].status == 503
        storage.down = False
        await customer.send("boom")
        await server.flush_deliveries()
        assert server.deliveries[-1].status == 200
        await customer.send("after")
        assert (await customer.expect_reply()).text == "fine"  # the chat was released
        await customer.expect_no_more()
    assert storage.sizes()["locks"] == 0


async def test_a_delivery_is_handled_once_by_message_id(wa: AsyncWachat) -> None:
    handled: list[str] = []
    router = Router()

    @router.message()
    async def count(message: Message) -> None:
        handled.append(message.text or "")

    storage: Storage = MemoryStorage()
    replicas = [Bot(router, wa, storage=storage) for _ in range(2)]
    event = upsert({"conversation": "once"})
    body = json.dumps(event.raw).encode()
    await asyncio.gather(*(bot.feed(event, body) for bot in replicas))
    assert handled == ["once"]


async def test_text_handlers_looked_up_still_match_first_in_registration_order(
    wa: AsyncWachat,
) -> None:
    calls: list[str] = []
    router = Router()

    def record(name: str) -> Any:
        async def handler(message: Message) -> None:
            calls.append(name)

        return handler

    router.message(F.text("hi"))(record("a"))
    router.message(F.text("hi", "yo"))(record("b"))  # "hi" is a's already
    router.message(F.regex("^yo|^x$"))(record("regex"))  # breaks the run of text handlers
    router.message(F.text("x", "yo"))(record("c"))  # after the regex: "x" is the regex's
    router.message(F.text("z") & F.private)(record("d"))  # combined: tested, not looked up
    router.message(F.from_me & F.text("hi"))(record("mine"))

    def text(value: str, **key: Any) -> MessageReceived:
        return upsert({"conversation": value}, **key)

    for value in ["hi", " yo ", "x", "z", "none"]:
        await dispatched(router, text(value), wa)
    await dispatched(router, text("hi", fromMe=True), wa)
    assert calls == ["a", "b", "regex", "d", "mine"]


async def test_a_message_a_dead_holder_left_is_run_again_only_if_it_had_not_begun_answering(
    wa: AsyncWachat, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    handled: list[str] = []
    router = Router()

    @router.message()
    async def record(message: Message) -> None:
        handled.append(message.text or "")

    path = str(tmp_path / "bot.db")
    dead = Bot(router, wa, storage=SQLiteStorage(path))
    for text, began_answering in [("quiet", False), ("answering", True)]:
        event = upsert({"conversation": text}, remoteJid=f"{text}@s.whatsapp.net", id=text)
        # Taken in, then its process died while handling it:
        await dead.admit(event, json.dumps(event.raw).encode())
        chat = f"{event.instance}|{event.remote_jid}"
        assert await dead.storage.claim(chat) is not None
        if began_answering:
            await dead.storage.sending(chat)
    await dead.storage.close()

    restarted = Bot(router, wa, storage=SQLiteStorage(path))
    await restarted.start()
    await restarted.close()
    assert handled == ["quiet"]
    assert "not handled again" in caplog.text
