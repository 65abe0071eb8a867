"""An order-status bot on the router: a menu, tracking an order, handing over to a person.

    WACHAT_API_KEY=... WACHAT_BASE_URL=... \\
    python examples/order_bot.py --instance API_NAME --port 8080 [--storage sqlite:bot.db]

On start it serves its webhook at http://127.0.0.1:PORT/order-bot, registers it (with a secret
of its own) on the instance for messages.upsert, and prints "ready". Storage: ``memory`` (the
default), ``sqlite:PATH`` (survives a restart) or ``redis://HOST:PORT/DB`` (several processes
on one Redis are replicas: each customer message is answered once, by one of them).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal

from aiohttp import web

from wachat_async import AsyncWachat, ListRow, ListSection
from wachat_async.bots import (
    Bot,
    Conversation,
    F,
    MemoryStorage,
    Message,
    Router,
    SQLiteStorage,
    Storage,
)

router = Router()
STATUSES = ("being packed", "shipped", "out for delivery", "delivered")


@router.message(F.list_reply("track"))
async def track(message: Message, conversation: Conversation) -> None:
    await conversation.set_state("awaiting_order")
    await message.reply("Please send your order number (for example A-17).")


@router.message(F.list_reply("human"))
async def human(message: Message, conversation: Conversation) -> None:
    await conversation.clear()
    await message.reply("A person from our team will answer you here shortly.")


@router.message(F.state("awaiting_order") & F.kind("text"))
async def order_status(message: Message, conversation: Conversation) -> None:
    order = (message.text or "").strip()
    status = STATUSES[sum(map(ord, order)) % len(STATUSES)]
    await conversation.clear()
    await message.reply(f"Order {order} is {status}.")


@router.fallback
async def menu(message: Message) -> None:
    await message.reply_list(
        title="Order help",
        text="Hello! What can we do for you?",
        button_text="Choose",
        sections=[
            ListSection(
                "Orders",
                [
                    ListRow("Track my order", row_id="track"),
                    ListRow("Talk to a person", row_id="human"),
                ],
            )
        ],
    )


def storage_from(spec: str) -> Storage:
    if spec == "memory":
        return MemoryStorage()
    if spec.startswith("sqlite:"):
        return SQLiteStorage(spec.removeprefix("sqlite:"))
    if spec.startswith("redis://"):
        from wachat_async.bots.redis_storage import RedisStorage

        return RedisStorage(spec)
    raise SystemExit(f"--storage must be memory, sqlite:PATH or redis://HOST:PORT/DB, not {spec!r}")


async def serve(instance: str, port: int, storage: Storage) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncWachat() as wa:  # WACHAT_API_KEY and WACHAT_BASE_URL from the environment
        bot = Bot(router, wa, storage=storage, states={"awaiting_order"}, state_timeout=3600)
        secret = secrets.token_urlsafe(32)
        runner = web.AppRunner(bot.receiver(secret).app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}/order-bot"
        # One webhook per URL: a restart takes over its own webhook with a new secret.
        mine = [h for h in await wa.webhooks.list(instance) if h.url == url]
        hook = await wa.webhooks.upsert(
            url,
            id=mine[0].id if mine else None,
            instance_name=instance,
            secret=secret,
            events=["messages.upsert"],
            enabled=True,
        )
        await bot.start()  # what a crash left in the inbox
        print(f"ready: {url}", flush=True)
        try:
            await stop.wait()
        finally:
            await wa.webhooks.upsert(url, id=hook.id, enabled=False)
            await runner.cleanup()
            await bot.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--instance", required=True, help="the instance's API name")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage", default="memory", help="memory, sqlite:PATH, redis://...")
    args = parser.parse_args()
    asyncio.run(serve(args.instance, args.port, storage_from(args.storage)))


if __name__ == "__main__":
    main()
