"""The storages on their own: dedupe, inbox order, locks across processes sharing them, leases
that free a chat held by a process that died, bounds, and typed errors when they are down. Redis
runs for real (a redis-server started here)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wachat_async.bots import MemoryStorage, SQLiteStorage, Storage, StorageError
from wachat_async.bots.redis_storage import RedisStorage


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "memory":
        made: Storage = MemoryStorage()
    elif request.param == "sqlite":
        made = SQLiteStorage(str(tmp_path / "bot.db"))
    else:
        made = RedisStorage(request.getfixturevalue("redis_url"), prefix=f"t{uuid.uuid4().hex}:")
    yield made
    await made.close()


async def test_dedupe_inbox_order_and_state(storage: Storage) -> None:
    assert await storage.enqueue("chat", "m1", "one")
    assert not await storage.enqueue("chat", "m1", "one again")  # the same delivery id
    assert await storage.enqueue("chat", "m2", "two")
    assert await storage.enqueue("other", "m3", "three")
    assert sorted(await storage.pending_chats()) == ["chat", "other"]
    assert await storage.claim("chat") == "one"
    assert await storage.unfinished("chat") == ("one", False)
    await storage.sending("chat")
    assert await storage.unfinished("chat") == ("one", True)
    assert await storage.claim("chat") == "two"  # replaces what was in progress
    assert await storage.unfinished("chat") == ("two", False)
    assert await storage.claim("chat") is None
    assert sorted(await storage.pending_chats()) == ["chat", "other"]  # "two" in progress
    await storage.finish("chat")
    assert await storage.unfinished("chat") is None
    assert await storage.pending_chats() == ["other"]
    await storage.save("chat", json.dumps({"state": "s"}), None)
    assert await storage.load("chat") == '{"state": "s"}'
    await storage.save("chat", None, None)
    assert await storage.load("chat") is None


async def test_one_holder_per_chat(storage: Storage) -> None:
    inside = 0
    most = 0

    async def hold() -> None:
        nonlocal inside, most
        async with storage.lock("chat"):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(hold() for _ in range(10)))
    assert most == 1


async def test_redis_locks_hold_across_processes_and_a_dead_holder_frees_them(
    redis_url: str,
) -> None:
    one = RedisStorage(redis_url, prefix="lock:", lock_lease=0.3)
    two = RedisStorage(redis_url, prefix="lock:", lock_lease=0.3)
    try:
        async with one.lock("chat"):
            waiter = asyncio.ensure_future(two.lock("chat").__aenter__())
            await asyncio.sleep(0.5)  # longer than a lease: the holder's renewal keeps it
            assert not waiter.done()
        await asyncio.wait_for(waiter, 5)
        # A holder that died (its key left, never renewed) frees the chat within a lease.
        await two._redis.set("lock:lock:dead", "someone", px=300)
        async with one.lock("dead"):
            pass
    finally:
        await one.close()
        await two.close()


async def test_a_storage_that_is_down_raises_a_typed_error(tmp_path: Path) -> None:
    dead = RedisStorage("redis://:hunter2@127.0.0.1:9/0")
    with pytest.raises(StorageError, match=r"Redis storage at 127\.0\.0\.1:9/0") as caught:
        await dead.enqueue("chat", "m1", "x")
    assert "hunter2" not in str(caught.value)
    await dead.close()
    folder = tmp_path / "not-a-dir"
    folder.write_text("")
    broken = SQLiteStorage(str(folder / "bot.db"))
    with pytest.raises(StorageError, match="SQLite storage"):
        await broken.enqueue("chat", "m1", "x")
    await broken.close()


async def test_memory_storage_is_bounded() -> None:
    storage = MemoryStorage(dedupe_capacity=3, state_capacity=2, inbox_capacity=2)
    for i in range(10):
        await storage.enqueue(f"c{i}", f"m{i}", "x")
        await storage.claim(f"c{i}")
        await storage.finish(f"c{i}")
        await storage.save(f"c{i}", "{}", None)
    assert storage.sizes() == {"seen": 3, "inboxes": 0, "in_progress": 0, "states": 2, "locks": 0}
    await storage.enqueue("c", "a", "x")
    await storage.enqueue("c", "b", "x")
    with pytest.raises(StorageError, match="already wait"):
        await storage.enqueue("c", "c", "x")


async def test_sqlite_keeps_everything_across_a_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "bot.db")
    first = SQLiteStorage(path)
    await first.enqueue("chat", "m1", "one")
    await first.enqueue("chat", "m2", "two")
    assert await first.claim("chat") == "one"
    await first.sending("chat")
    await first.save("chat", '{"state": "s"}', 3600)
    await first.close()  # as if killed while answering "one"
    second = SQLiteStorage(path)
    assert not await second.enqueue("chat", "m1", "one")
    assert await second.pending_chats() == ["chat"]
    assert await second.unfinished("chat") == ("one", True)
    assert await second.claim("chat") == "two"
    assert await second.load("chat") == '{"state": "s"}'
    await second.close()
