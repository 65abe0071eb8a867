"""The bulk journal: what a provisioning run or a broadcast is about to do, and what it did.

One SQLite file holds both kinds of row, keyed by what must never happen twice: a provisioning
row per friendly instance name, a message row per campaign and message key (a key is one
campaign's: a later campaign may use it again). A row is written and committed
(fsync'd, ``synchronous=FULL``) as ``in_flight`` before its request is sent, then ``done``,
``failed`` or ``unknown``. A re-run skips what is done and reconciles (creates) or reports
(messages) what was in flight.

A journal belongs to one account, one base URL and one process at a time:

- it stores a one-way fingerprint of the API key (PBKDF2 with a salt of its own, never the key)
  and the base URL, and refuses a client of another account or URL (JournalMismatchError);
- it is locked (``flock``) while open; a second process is refused at once (JournalInUseError);
- a damaged file, a directory, or a path that cannot be opened is a JournalError, raised before
  anything is sent.

All SQLite work runs on one thread of the journal's own, never on the event loop. Writes that
arrive together are committed together (group commit), and each caller resumes only once its
row is on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

import attrs

from .._security import key_fingerprint, same_fingerprint
from ..errors import (
    JournalError,
    JournalInUseError,
    JournalMismatchError,
    OutcomeUnknownError,
    WachatError,
)

T = TypeVar("T")

IN_FLIGHT, DONE, FAILED, UNKNOWN = "in_flight", "done", "failed", "unknown"
#: 3: message rows keyed by campaign and key (2 keyed them by key alone).
_SCHEMA_VERSION = "3"
_ERROR_CHARS = 500

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS provision (
    instance_name TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('in_flight', 'done', 'failed', 'unknown')),
    api_instance_name TEXT,
    started_at REAL,
    error TEXT,
    updated_at REAL NOT NULL);
"""

_MESSAGES_TABLE = """
CREATE TABLE IF NOT EXISTS messages (
    key TEXT NOT NULL,
    campaign TEXT NOT NULL,
    instance TEXT NOT NULL,
    recipient TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('in_flight', 'done', 'failed', 'unknown')),
    message_id TEXT,
    started_at REAL,
    error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (campaign, key));
"""

#: A schema-2 journal's message rows, moved into the schema-3 table as the journal opens.
_FROM_SCHEMA_2 = f"""
BEGIN IMMEDIATE;
ALTER TABLE messages RENAME TO messages_2;
{_MESSAGES_TABLE}
INSERT INTO messages SELECT key, campaign, instance, recipient, state, message_id, started_at,
    error, updated_at FROM messages_2;
DROP TABLE messages_2;
UPDATE meta SET value = '{_SCHEMA_VERSION}' WHERE key = 'schema';
COMMIT;
"""


@attrs.frozen
class ProvisionEntry:
    """A provisioning row: the create of one friendly name."""

    instance_name: str
    state: str
    api_instance_name: str | None
    started_at: float | None
    error: str | None


@attrs.frozen
class MessageEntry:
    """A broadcast row: one message, by key."""

    key: str
    campaign: str
    instance: str
    recipient: str
    state: str
    message_id: str | None
    started_at: float | None
    error: str | None


#: A message row as :class:`MessageEntry` reads it.
_SELECT_MESSAGE = (
    "SELECT key, campaign, instance, recipient, state, message_id, started_at, error FROM messages"
)


#: A message recorded as in flight, before it is sent.
_INSERT_CLAIM = (
    "INSERT INTO messages (key, campaign, instance, recipient, state, started_at, updated_at) "
    "VALUES (?, ?, ?, ?, 'in_flight', ?, ?)"
)


#: The outcome of a claimed message.
_UPDATE_OUTCOME = (
    "UPDATE messages SET state = ?, message_id = COALESCE(?, message_id), error = ?, "
    "updated_at = ? WHERE campaign = ? AND key = ?"
)


def _read_message(db: sqlite3.Connection, campaign: str, key: str) -> MessageEntry | None:
    row = db.execute(
        f"{_SELECT_MESSAGE} WHERE campaign = ? AND key = ?", (campaign, key)
    ).fetchone()
    return None if row is None else MessageEntry(*row)


def outcome_state(error: WachatError) -> str:
    """How a failure is journaled: ``unknown`` when it may have taken effect."""
    return UNKNOWN if isinstance(error, OutcomeUnknownError) else FAILED


def error_text(error: WachatError) -> str:
    """An error as the journal keeps it (its text is already free of the API key)."""
    return f"{type(error).__name__}: {error}"[:_ERROR_CHARS]


class _Job:
    __slots__ = ("fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any] | None,
    ) -> None:
        self.fn = fn
        self.loop = loop
        #: None for a write nobody waits for (its failure surfaces at the next call or close).
        self.future = future


def _settle(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.done():  # its caller was cancelled
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class Journal:
    """An open journal. Use ``async with await Journal.open(path, api_key=..., base_url=...)``."""

    def __init__(self, path: Path, db: sqlite3.Connection, lock_fd: int) -> None:
        self.path = path
        self._db = db
        self._lock_fd = lock_fd
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="wachat-journal", daemon=True)
        self._thread.start()
        self._closed = False
        self._unreported: BaseException | None = None
        # Broadcast rows gathered during one turn of the event loop, written together.
        self._claims: list[tuple[Any, ...]] = []
        self._claimed: list[asyncio.Future[None]] = []
        self._outcomes: list[tuple[Any, ...]] = []
        self._flush_due = False

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    # -- opening --------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, api_key: str, base_url: str) -> Self:
        """Open (or create) the journal at ``path`` for this account and base URL, locked."""
        return await asyncio.to_thread(cls._open_now, Path(path), api_key, base_url)

    @classmethod
    def _open_now(cls, path: Path, api_key: str, base_url: str) -> Self:
        where = str(path)
        if path.is_dir():
            raise JournalError(f"journal {where} is a directory, not a file", path=where)
        if not path.parent.is_dir():
            raise JournalError(f"cannot open journal {where}: no such directory", path=where)
        try:
            lock_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            reason: str | None = exc.strerror or type(exc).__name__
        else:
            reason = None
        if reason is not None:
            raise JournalError(f"cannot open journal {where}: {reason}", path=where)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            raise JournalInUseError(
                f"journal {where} is in use by another process; wait for it to finish (two runs "
                "on one journal could create or send twice)",
                path=where,
            ) from None
        try:
            db = cls._connect(path, api_key, base_url)
        except BaseException:
            os.close(lock_fd)  # releases the lock
            raise
        return cls(path, db, lock_fd)

    @staticmethod
    def _connect(path: Path, api_key: str, base_url: str) -> sqlite3.Connection:
        where = str(path)
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed in-flight row survives a power cut, not just a crash.
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_TABLES)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("schema") == "2":
                db.executescript(_FROM_SCHEMA_2)
                meta["schema"] = _SCHEMA_VERSION
            db.executescript(_MESSAGES_TABLE)
            # Every page read now, not when a run meets a damaged one half-way: by then some
            # creates would have been sent with their rows unreadable or unwritable.
            verdict = db.execute("PRAGMA quick_check(1)").fetchone()
        except sqlite3.Error as exc:
            problem: str | None = f"{type(exc).__name__}: {exc}"
        else:
            problem = None if verdict == ("ok",) else f"integrity check: {verdict[0]}"
        if problem is not None or db is None:
            if db is not None:
                db.close()
            raise JournalError(
                f"journal {where} cannot be read ({problem}); it is damaged or not a journal. "
                "Move it aside to start afresh (what it recorded will then be reconciled again)",
                path=where,
            )
        try:
            if meta.get("schema", _SCHEMA_VERSION) != _SCHEMA_VERSION:
                raise JournalError(
                    f"journal {where} has schema {meta['schema']}, which this version of "
                    "wachat-async does not know (a newer one wrote it?)",
                    path=where,
                )
            if "key_fingerprint" not in meta:
                salt = secrets.token_bytes(16)
                rows = {
                    "schema": _SCHEMA_VERSION,
                    "key_salt": salt.hex(),
                    "key_fingerprint": key_fingerprint(api_key, salt),
                    "base_url": base_url,
                }
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", rows.items())
            elif not same_fingerprint(
                api_key, bytes.fromhex(meta.get("key_salt", "")), meta["key_fingerprint"]
            ):
                raise JournalMismatchError(
                    f"journal {where} belongs to another account (it was written with a "
                    "different API key); use another journal for this account",
                    path=where,
                )
            elif meta.get("base_url") != base_url:
                raise JournalMismatchError(
                    f"journal {where} was written for {meta.get('base_url')}, not {base_url}; "
                    "use another journal for this server",
                    path=where,
                )
        except BaseException:
            db.close()
            raise
        return db

    # -- the journal's thread -------------------------------------------------------------

    def _serve(self) -> None:
        """Run jobs in arrival order; every job that is waiting joins one transaction."""
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            while True:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)  # stop after this batch
                    break
                batch.append(more)
            self._run(batch)

    def _run(self, batch: list[_Job]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            for job in batch:
                # A job that fails leaves nothing behind (a batch of claims half-inserted would
                # be messages claimed and never sent); the others of the batch still commit.
                db.execute("SAVEPOINT job")
                try:
                    outcomes.append((job.fn(db), None))
                except sqlite3.Error as exc:
                    db.execute("ROLLBACK TO job")
                    outcomes.append((None, self._damaged(exc)))
                except Exception as exc:  # a bug: its caller raises it, the thread goes on
                    db.execute("ROLLBACK TO job")
                    outcomes.append((None, exc))
                db.execute("RELEASE job")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            failure = self._damaged(exc)
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            outcomes = [(None, failure)] * len(batch)
        # One wake-up per loop and batch, not one per job.
        waiting: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for job, (result, error) in zip(batch, outcomes, strict=True):
            if job.future is not None:
                waiting.setdefault(job.loop, []).append((job.future, result, error))
            elif error is not None and self._unreported is None:
                self._unreported = error
        for loop, settled in waiting.items():
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, settled)

    def _damaged(self, exc: sqlite3.Error) -> JournalError:
        where = str(self.path)
        return JournalError(
            f"journal {where} failed ({type(exc).__name__}: {exc}); it may be damaged or its "
            "disk full",
            path=where,
        )

    async def _submit(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._enqueue(_Job(fn, loop, future))
        return await future

    def _enqueue(self, job: _Job) -> None:
        """The one way a job reaches the journal's thread: behind every row gathered before it
        (an outcome recorded, then a claim of the same message again after a 429, must reach
        the file in that order)."""
        self._check_usable()
        self._flush()
        self._jobs.put(job)

    def _gathered(self) -> None:
        """A row joined this turn's: have them written once the turn is over."""
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """The rows gathered so far, to the thread: outcomes first (each settles a claim of an
        earlier batch), then claims; one statement each."""
        self._flush_due = False
        if self._outcomes:
            outcomes, self._outcomes = self._outcomes, []
            self._jobs.put(
                _Job(lambda db: db.executemany(_UPDATE_OUTCOME, outcomes), self._loop(), None)
            )
        if self._claims:
            self._put_claims()

    def _check_usable(self) -> None:
        if self._closed:
            raise JournalError(f"journal {self.path} is closed", path=str(self.path))
        failure, self._unreported = self._unreported, None
        if failure is not None:
            raise failure

    # -- provisioning rows ----------------------------------------------------------------

    async def provision_entry(self, instance_name: str) -> ProvisionEntry | None:
        def read(db: sqlite3.Connection) -> ProvisionEntry | None:
            row = db.execute(
                "SELECT instance_name, state, api_instance_name, started_at, error "
                "FROM provision WHERE instance_name = ?",
                (instance_name,),
            ).fetchone()
            return None if row is None else ProvisionEntry(*row)

        return await self._submit(read)

    async def provision_entries(self) -> list[ProvisionEntry]:
        def read(db: sqlite3.Connection) -> list[ProvisionEntry]:
            rows = db.execute(
                "SELECT instance_name, state, api_instance_name, started_at, error FROM provision"
            ).fetchall()
            return [ProvisionEntry(*row) for row in rows]

        return await self._submit(read)

    async def record_provision(
        self,
        instance_name: str,
        state: str,
        *,
        api_instance_name: str | None = None,
        started_at: float | None = None,
        error: str | None = None,
    ) -> None:
        """Write a provisioning row; returns once it is on disk."""

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                """INSERT INTO provision (instance_name, state, api_instance_name, started_at,
                                          error, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT(instance_name) DO UPDATE SET
                     state = excluded.state,
                     api_instance_name = COALESCE(excluded.api_instance_name, api_instance_name),
                     started_at = COALESCE(excluded.started_at, started_at),
                     error = excluded.error,
                     updated_at = excluded.updated_at""",
                (instance_name, state, api_instance_name, started_at, error, time.time()),
            )

        await self._submit(write)

    # -- message rows ---------------------------------------------------------------------

    async def message_entry(self, campaign: str, key: str) -> MessageEntry | None:
        return await self._submit(lambda db: _read_message(db, campaign, key))

    async def message_entries(self, campaign: str | None = None) -> list[MessageEntry]:
        def read(db: sqlite3.Connection) -> list[MessageEntry]:
            rows = (
                db.execute(_SELECT_MESSAGE).fetchall()
                if campaign is None
                else db.execute(f"{_SELECT_MESSAGE} WHERE campaign = ?", (campaign,)).fetchall()
            )
            return [MessageEntry(*row) for row in rows]

        return await self._submit(read)

    async def sent_times(self, instance: str, *, since: float) -> list[float]:
        """When ``instance``'s messages recorded as sent since ``since`` were sent (any
        campaign): what its hourly and daily caps count from earlier runs."""

        def read(db: sqlite3.Connection) -> list[float]:
            rows = db.execute(
                "SELECT started_at FROM messages WHERE instance = ? AND state = 'done' "
                "AND started_at >= ? ORDER BY started_at",
                (instance, since),
            ).fetchall()
            return [row[0] for row in rows]

        return await self._submit(read)

    async def has_messages(self, campaign: str) -> bool:
        """Whether any message of ``campaign`` is recorded (a first run has none to skip)."""

        def read(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT 1 FROM messages WHERE campaign = ? LIMIT 1", (campaign,))
            return row.fetchone() is not None

        return await self._submit(read)

    async def claim_message(
        self,
        key: str,
        *,
        campaign: str,
        instance: str,
        recipient: str,
        started_at: float,
        reclaim_unknown: bool = False,
    ) -> MessageEntry | None:
        """Record message ``key`` as in flight, on disk, unless its row says it must not be
        sent: then that row (done; or unknown, or in flight from a run that died, unless
        ``reclaim_unknown``). One atomic step, so the check and the claim cannot part."""

        def claim(db: sqlite3.Connection) -> MessageEntry | None:
            try:  # the common case, a message never recorded: one insert
                db.execute(
                    _INSERT_CLAIM, (key, campaign, instance, recipient, started_at, time.time())
                )
            except sqlite3.IntegrityError:  # its key is recorded: the row decides
                entry = _read_message(db, campaign, key)
                if entry is None:  # not the key that clashed: a damaged journal
                    raise
                if entry.state == DONE or (
                    entry.state in (IN_FLIGHT, UNKNOWN) and not reclaim_unknown
                ):
                    return entry
                db.execute(
                    "UPDATE messages SET state = 'in_flight', started_at = ?, error = NULL, "
                    "updated_at = ? WHERE campaign = ? AND key = ?",
                    (started_at, time.time(), campaign, key),
                )
            return None

        return await self._submit(claim)

    async def claim_new_message(
        self, key: str, *, campaign: str, instance: str, recipient: str, started_at: float
    ) -> None:
        """Record as in flight, on disk, a message of a campaign the journal had no message of
        when this run began (so nothing can be settled yet). Claims made in one turn of the
        event loop are written by one statement, in one commit."""
        self._check_usable()
        future: asyncio.Future[None] = self._loop().create_future()
        self._claims.append((key, campaign, instance, recipient, started_at, started_at))
        self._claimed.append(future)
        self._gathered()
        await future

    def _put_claims(self) -> None:
        rows, futures = self._claims, self._claimed
        self._claims, self._claimed = [], []
        batch: asyncio.Future[None] = self._loop().create_future()
        self._jobs.put(_Job(lambda db: db.executemany(_INSERT_CLAIM, rows), self._loop(), batch))

        def settle(done: asyncio.Future[None]) -> None:
            error = None if done.cancelled() else done.exception()
            for future in futures:
                if not future.done():
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)

        batch.add_done_callback(settle)

    def record_message(
        self,
        campaign: str,
        key: str,
        state: str,
        *,
        message_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record the outcome of a claimed message. Not waited for (the claim made before
        sending is what must be on disk first); outcomes of one turn of the event loop are
        written by one statement with the next commit, and close waits for them."""
        self._check_usable()
        self._outcomes.append((state, message_id, error, time.time(), campaign, key))
        self._gathered()

    @staticmethod
    def _loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    # -- closing --------------------------------------------------------------------------

    async def close(self) -> None:
        """Finish pending writes, close the file and release the lock. Idempotent."""
        if self._closed:
            return
        self._flush()  # what was gathered is written before the thread is told to stop
        self._closed = True
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._db.close()
        os.close(self._lock_fd)  # after SQLite: closing releases the flock
        failure, self._unreported = self._unreported, None
        if failure is not None:
            raise failure

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
