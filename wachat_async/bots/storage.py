"""Where a bot keeps what must outlive one delivery: which deliveries it has taken in (dedupe),
each chat's inbox (deliveries taken in, not yet handled, in arrival order), each chat's lock,
and each chat's conversation state.

Three implementations: :class:`MemoryStorage` (the default: one process, bounded),
:class:`SQLiteStorage` (one process at a time on a file: survives a restart, ``kill -9``
included) and :class:`~wachat_async.bots.redis.RedisStorage` (several replicas). A storage that
fails raises :class:`StorageError`; the receiver then answers 503 so the delivery comes again.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import sqlite3
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .. import _validate as check
from ..errors import WachatError

__all__ = ["MemoryStorage", "SQLiteStorage", "Storage", "StorageError"]

T = TypeVar("T")

#: How long a delivery id is remembered (Wachat redelivers within minutes, not days).
DEDUPE_TTL = 24 * 3600.0


class StorageError(WachatError):
    """The bot's storage failed (down, locked, full): the delivery was not taken in."""


class Storage(abc.ABC):
    """What a bot needs from its storage. ``chat`` is an opaque key (instance and customer);
    ``item`` and ``snapshot`` are JSON text. Every method may raise :class:`StorageError`."""

    @abc.abstractmethod
    async def enqueue(self, chat: str, delivery_id: str, item: str) -> bool:
        """Append ``item`` to the chat's inbox unless ``delivery_id`` was taken in before (by
        this process or another replica): True when appended. Atomic."""

    @abc.abstractmethod
    async def claim(self, chat: str) -> str | None:
        """Move the oldest item of the chat's inbox to its in-progress slot (replacing what was
        there) and return it; None when the inbox is empty. Call it holding the chat's lock."""

    @abc.abstractmethod
    async def sending(self, chat: str) -> None:
        """The item in progress is about to send a reply: after a crash it is not run again."""

    @abc.abstractmethod
    async def finish(self, chat: str) -> None:
        """The item in progress is handled: empty the slot."""

    @abc.abstractmethod
    async def unfinished(self, chat: str) -> tuple[str, bool] | None:
        """What a holder that died left in progress, and whether it had begun sending."""

    @abc.abstractmethod
    async def pending_chats(self) -> list[str]:
        """Chats with an inbox or an item in progress (left by a crash or a dead replica)."""

    @abc.abstractmethod
    def lock(self, chat: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the chat: one handler at a time per chat, across whoever shares the storage."""

    @abc.abstractmethod
    async def load(self, chat: str) -> str | None:
        """The chat's conversation snapshot, or None."""

    @abc.abstractmethod
    async def save(self, chat: str, snapshot: str | None, ttl: float | None) -> None:
        """Store (None: delete) the chat's snapshot; ``ttl`` lets the storage drop it later."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Release connections and threads."""


class _ChatLocks:
    """One asyncio lock per chat, kept only while held or waited for: memory follows the chats
    active right now, never every chat ever seen."""

    def __init__(self) -> None:
        self._locks: dict[str, list[Any]] = {}  # chat -> [lock, holders and waiters]

    def __len__(self) -> int:
        return len(self._locks)

    def hold(self, chat: str) -> _Held:
        return _Held(self._locks, chat)


class _Held:
    """``async with`` one chat's lock (a class, not a generator: it is on every delivery's
    path)."""

    __slots__ = ("_chat", "_entry", "_locks")

    def __init__(self, locks: dict[str, list[Any]], chat: str) -> None:
        self._locks = locks
        self._chat = chat
        entry = locks.get(chat)
        if entry is None:
            entry = locks[chat] = [asyncio.Lock(), 0]
        entry[1] += 1
        self._entry = entry

    async def __aenter__(self) -> None:
        try:
            await self._entry[0].acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._entry[0].release()
        self._leave()

    def _leave(self) -> None:
        self._entry[1] -= 1
        if not self._entry[1]:
            del self._locks[self._chat]


class MemoryStorage(Storage):
    """In this process only, bounded: at most ``dedupe_capacity`` delivery ids (the oldest
    forgotten first), ``state_capacity`` conversations (the least recently used dropped first),
    ``inbox_capacity`` waiting deliveries per chat (beyond that, StorageError: 503), and a lock
    only per chat being handled right now."""

    def __init__(
        self,
        *,
        dedupe_capacity: int = 100_000,
        state_capacity: int = 100_000,
        inbox_capacity: int = 1_000,
    ) -> None:
        self._dedupe_capacity = check.positive_int("dedupe_capacity", dedupe_capacity)
        self._state_capacity = check.positive_int("state_capacity", state_capacity)
        self._inbox_capacity = check.positive_int("inbox_capacity", inbox_capacity)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._inboxes: dict[str, deque[str]] = {}
        #: The item each chat is handling now, and whether it began sending (while handled).
        self._in_progress: dict[str, list[Any]] = {}
        self._states: OrderedDict[str, tuple[str, float | None]] = OrderedDict()
        self._locks = _ChatLocks()

    def sizes(self) -> dict[str, int]:
        """How many entries each part holds (what the bounds bound)."""
        return {
            "seen": len(self._seen),
            "inboxes": len(self._inboxes),
            "in_progress": len(self._in_progress),
            "states": len(self._states),
            "locks": len(self._locks),
        }

    async def enqueue(self, chat: str, delivery_id: str, item: str) -> bool:
        if delivery_id in self._seen:
            return False
        inbox = self._inboxes.setdefault(chat, deque())
        if len(inbox) >= self._inbox_capacity:
            raise StorageError(f"{self._inbox_capacity} deliveries already wait in this chat")
        self._seen[delivery_id] = None
        if len(self._seen) > self._dedupe_capacity:
            self._seen.popitem(last=False)
        inbox.append(item)
        return True

    async def claim(self, chat: str) -> str | None:
        inbox = self._inboxes.get(chat)
        if not inbox:
            return None
        item = inbox.popleft()
        if not inbox:
            del self._inboxes[chat]
        self._in_progress[chat] = [item, False]
        return item

    async def sending(self, chat: str) -> None:
        if chat in self._in_progress:
            self._in_progress[chat][1] = True

    async def finish(self, chat: str) -> None:
        self._in_progress.pop(chat, None)

    async def unfinished(self, chat: str) -> tuple[str, bool] | None:
        entry = self._in_progress.get(chat)
        return None if entry is None else (entry[0], entry[1])

    async def pending_chats(self) -> list[str]:
        return list(dict.fromkeys([*self._in_progress, *self._inboxes]))

    def lock(self, chat: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locks.hold(chat)

    async def load(self, chat: str) -> str | None:
        entry = self._states.get(chat)
        if entry is None:
            return None
        snapshot, expires = entry
        if expires is not None and expires <= time.time():
            del self._states[chat]
            return None
        self._states.move_to_end(chat)
        return snapshot

    async def save(self, chat: str, snapshot: str | None, ttl: float | None) -> None:
        if snapshot is None:
            self._states.pop(chat, None)
            return
        self._states[chat] = (snapshot, None if ttl is None else time.time() + ttl)
        self._states.move_to_end(chat)
        if len(self._states) > self._state_capacity:
            self._states.popitem(last=False)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (delivery_id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, chat TEXT NOT NULL,
                                  item TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS inbox_chat ON inbox (chat, seq);
CREATE TABLE IF NOT EXISTS state (chat TEXT PRIMARY KEY, snapshot TEXT NOT NULL, expires REAL);
CREATE TABLE IF NOT EXISTS in_progress (chat TEXT PRIMARY KEY, item TEXT NOT NULL,
                                        sending INTEGER NOT NULL DEFAULT 0);
"""


class SQLiteStorage(Storage):
    """A SQLite file (stdlib ``sqlite3``, on a thread of its own so the loop never waits on the
    disk), written before the delivery is acknowledged: a restart, ``kill -9`` included, keeps
    what was taken in, the inboxes and the conversations. One process at a time per file (the
    chat locks are this process's); replicas share a :class:`RedisStorage`. Delivery ids are
    kept ``dedupe_ttl`` seconds."""

    def __init__(self, path: str, *, dedupe_ttl: float = DEDUPE_TTL) -> None:
        self._path = path
        self._dedupe_ttl = check.seconds("dedupe_ttl", dedupe_ttl)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wachat-sqlite")
        #: Opened, and only ever used, on the storage's one thread.
        self._db: sqlite3.Connection | None = None
        self._locks = _ChatLocks()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")  # an acknowledged delivery is on the disk
                db.executescript(_SCHEMA)
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            try:
                return work(self._connection())
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite storage {self._path}: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def enqueue(self, chat: str, delivery_id: str, item: str) -> bool:
        now = time.time()

        def work(db: sqlite3.Connection) -> bool:
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM seen WHERE at < ?", (now - self._dedupe_ttl,))
                added = db.execute(
                    "INSERT OR IGNORE INTO seen (delivery_id, at) VALUES (?, ?)",
                    (delivery_id, now),
                ).rowcount
                if added:
                    db.execute("INSERT INTO inbox (chat, item) VALUES (?, ?)", (chat, item))
                return bool(added)

        return await self._run(work)

    async def claim(self, chat: str) -> str | None:
        def work(db: sqlite3.Connection) -> str | None:
            with db:
                db.execute("BEGIN IMMEDIATE")
                row = db.execute(
                    "SELECT seq, item FROM inbox WHERE chat = ? ORDER BY seq LIMIT 1", (chat,)
                ).fetchone()
                if row is None:
                    return None
                db.execute("DELETE FROM inbox WHERE seq = ?", (row[0],))
                db.execute(
                    "INSERT OR REPLACE INTO in_progress (chat, item, sending) VALUES (?, ?, 0)",
                    (chat, row[1]),
                )
                return str(row[1])

        return await self._run(work)

    async def sending(self, chat: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("UPDATE in_progress SET sending = 1 WHERE chat = ?", (chat,))

        await self._run(work)

    async def finish(self, chat: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM in_progress WHERE chat = ?", (chat,))

        await self._run(work)

    async def unfinished(self, chat: str) -> tuple[str, bool] | None:
        def work(db: sqlite3.Connection) -> tuple[str, bool] | None:
            row = db.execute(
                "SELECT item, sending FROM in_progress WHERE chat = ?", (chat,)
            ).fetchone()
            return None if row is None else (str(row[0]), bool(row[1]))

        return await self._run(work)

    async def pending_chats(self) -> list[str]:
        def work(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT chat FROM in_progress UNION SELECT chat FROM inbox"
            ).fetchall()
            return sorted(str(r[0]) for r in rows)

        return await self._run(work)

    def lock(self, chat: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locks.hold(chat)

    async def load(self, chat: str) -> str | None:
        now = time.time()

        def work(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT snapshot FROM state WHERE chat = ? AND (expires IS NULL OR expires > ?)",
                (chat, now),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(work)

    async def save(self, chat: str, snapshot: str | None, ttl: float | None) -> None:
        expires = None if ttl is None else time.time() + ttl

        def work(db: sqlite3.Connection) -> None:
            with db:
                if snapshot is None:
                    db.execute("DELETE FROM state WHERE chat = ?", (chat,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO state (chat, snapshot, expires) VALUES (?, ?, ?)",
                        (chat, snapshot, expires),
                    )

        await self._run(work)

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._thread, close)
        self._thread.shutdown(wait=True)
