"""RedisStorage: the bot's storage on Redis (``redis.asyncio``, the ``redis`` extra), shared by
every replica of a bot.

Keys, under ``prefix``: ``seen:<delivery id>`` (expires after ``dedupe_ttl``),
``inbox:<chat>`` (a list, oldest first), ``progress:<chat>`` and ``sending:<chat>`` (the item
being handled, and whether it began sending), ``pending`` (the set of chats with either),
``lock:<chat>`` (a lease of ``lock_lease`` seconds, renewed while held, so a replica that dies
holding a chat frees it within one lease) and ``state:<chat>`` (expires with the state).
Taking a delivery in, claiming an inbox item and finishing it are each one Lua script: atomic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from .. import _validate as check
from ..errors import InvalidRequestError
from .storage import DEDUPE_TTL, Storage, StorageError

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - depends on the install
    raise ImportError("RedisStorage needs redis-py: pip install 'wachat-async[redis]'") from None

__all__ = ["RedisStorage"]

logger = logging.getLogger("wachat_async.bots")

T = TypeVar("T")

_ENQUEUE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  redis.call('SADD', KEYS[3], ARGV[3])
  return 1
end
return 0
"""
_CLAIM = """
local item = redis.call('LPOP', KEYS[1])
if item then
  redis.call('SET', KEYS[2], item)
  redis.call('DEL', KEYS[3])
end
return item
"""
_FINISH = """
redis.call('DEL', KEYS[1], KEYS[2])
if redis.call('LLEN', KEYS[3]) == 0 then redis.call('SREM', KEYS[4], ARGV[1]) end
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: Longest pause between two tries for a chat another replica holds.
_MAX_LOCK_PAUSE = 0.1


class RedisStorage(Storage):
    """The bot's storage on the Redis at ``url`` (``redis://HOST:PORT/DB``). See the module
    docstring for what it keeps and for how long."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "wachat:bot:",
        lock_lease: float = 5.0,
        dedupe_ttl: float = DEDUPE_TTL,
    ) -> None:
        self._redis: Any = aioredis.Redis.from_url(url, decode_responses=True)
        self._where = url.split("@")[-1]  # never a password in an error
        self._prefix = check.text("prefix", prefix)
        self._lease_ms = int(check.seconds("lock_lease", lock_lease) * 1000)
        if self._lease_ms < 100:
            raise InvalidRequestError("lock_lease must be at least 0.1 s")
        self._dedupe_ms = int(check.seconds("dedupe_ttl", dedupe_ttl) * 1000)
        self._enqueue = self._redis.register_script(_ENQUEUE)
        self._claim = self._redis.register_script(_CLAIM)
        self._finish = self._redis.register_script(_FINISH)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)

    def __repr__(self) -> str:
        return f"RedisStorage({self._where!r}, prefix={self._prefix!r})"

    async def _call(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except (RedisError, OSError) as exc:
            raise StorageError(f"Redis storage at {self._where}: {exc}") from exc

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self._prefix}{kind}{':' + name if name else ''}"

    async def enqueue(self, chat: str, delivery_id: str, item: str) -> bool:
        keys = [self._key("seen", delivery_id), self._key("inbox", chat), self._key("pending")]
        added = await self._call(self._enqueue(keys=keys, args=[self._dedupe_ms, item, chat]))
        return bool(added)

    async def claim(self, chat: str) -> str | None:
        keys = [self._key("inbox", chat), self._key("progress", chat), self._key("sending", chat)]
        item = await self._call(self._claim(keys=keys))
        return None if item is None else str(item)

    async def sending(self, chat: str) -> None:
        await self._call(self._redis.set(self._key("sending", chat), "1"))

    async def finish(self, chat: str) -> None:
        keys = [
            self._key("progress", chat),
            self._key("sending", chat),
            self._key("inbox", chat),
            self._key("pending"),
        ]
        await self._call(self._finish(keys=keys, args=[chat]))

    async def unfinished(self, chat: str) -> tuple[str, bool] | None:
        item, sending = await self._call(
            self._redis.mget(self._key("progress", chat), self._key("sending", chat))
        )
        return None if item is None else (str(item), sending is not None)

    async def pending_chats(self) -> list[str]:
        chats = await self._call(self._redis.smembers(self._key("pending")))
        return sorted(str(c) for c in chats)

    @contextlib.asynccontextmanager
    async def lock(self, chat: str) -> AsyncIterator[None]:
        key, token = self._key("lock", chat), secrets.token_hex(16)
        pause = 0.005
        while not await self._call(self._redis.set(key, token, nx=True, px=self._lease_ms)):
            await asyncio.sleep(pause)  # held by another handler of this chat, here or elsewhere
            pause = min(pause * 2, _MAX_LOCK_PAUSE)
        renewal = asyncio.get_running_loop().create_task(self._keep(key, token))
        try:
            yield
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            await self._call(self._release(keys=[key], args=[token]))

    async def _keep(self, key: str, token: str) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                held = await self._call(self._renew(keys=[key], args=[token, self._lease_ms]))
            except StorageError as exc:
                logger.warning("could not renew the lock on %s: %s", key, exc)
                continue
            if not held:
                logger.warning("lost the lock on %s (its lease ran out)", key)
                return

    async def load(self, chat: str) -> str | None:
        snapshot = await self._call(self._redis.get(self._key("state", chat)))
        return None if snapshot is None else str(snapshot)

    async def save(self, chat: str, snapshot: str | None, ttl: float | None) -> None:
        key = self._key("state", chat)
        if snapshot is None:
            await self._call(self._redis.delete(key))
        elif ttl is None:
            await self._call(self._redis.set(key, snapshot))
        elif ttl <= 0:
            await self._call(self._redis.delete(key))
        else:
            await self._call(self._redis.set(key, snapshot, px=max(1, int(ttl * 1000))))

    async def close(self) -> None:
        await self._redis.aclose()
