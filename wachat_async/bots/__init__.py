"""Bots on the signed webhook receiver: a router with filters, replies on the incoming message,
conversations that survive restarts and replicas.

::

    from wachat_async import AsyncWachat
    from wachat_async.bots import F, Bot, Message, Router

    router = Router()

    @router.message(F.text("hi", ignore_case=True))
    async def hello(message: Message) -> None:
        await message.reply("Hello!")

    bot = Bot(router, AsyncWachat())
    app = bot.receiver(secret).app()        # serve it; register its URL as the webhook

See :mod:`wachat_async.bots.router` (dispatch order, what handlers get),
:mod:`wachat_async.bots.bot` (dedupe, order, crashes) and :mod:`wachat_async.bots.storage`.
"""

from .bot import Bot
from .chat import Conversation, Message
from .filters import F, Filter
from .router import Middleware, Router
from .storage import MemoryStorage, SQLiteStorage, Storage, StorageError

__all__ = [
    "Bot",
    "Conversation",
    "F",
    "Filter",
    "MemoryStorage",
    "Message",
    "Middleware",
    "Router",
    "SQLiteStorage",
    "Storage",
    "StorageError",
]
