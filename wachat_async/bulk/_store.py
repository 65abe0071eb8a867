"""The journal's file, apart from what its rows mean: one SQLite file, locked while open, bound
to one account and base URL, and one thread of its own that runs every read and write in order.

- it stores a one-way fingerprint of the API key (PBKDF2 with a salt of its own, never the key)
  and the base URL, and refuses a client of another account or URL (JournalMismatchError);
- it is locked (``flock``) while open; a second process is refused at once (JournalInUseError);
- a damaged file, a directory, or a path that cannot be opened is a JournalError, raised before
  anything is sent.

All SQLite work runs on the store's thread, never on the event loop. Jobs that arrive together
are committed together (group commit), each in a savepoint of its own (one that fails leaves
nothing behind), and each caller resumes only once its job is on disk. Rows gathered during
one turn of the event loop (:meth:`Store.gather`) are written by one statement each; every job
goes behind them (the one write path), so rows reach the file in the
order they were recorded.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

from .._security import key_fingerprint, same_fingerprint
from ..errors import JournalError, JournalInUseError, JournalMismatchError

T = TypeVar("T")

_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"


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


class Store:
    """An open store; :class:`~wachat_async.bulk.journal.Journal` gives its rows a meaning.
    Subclasses name their schema (``SCHEMA``) and create or migrate their tables
    (:meth:`prepare`)."""

    #: The schema version a new file is written with (kept in ``meta``).
    SCHEMA = "1"

    def __init__(self, path: Path, db: sqlite3.Connection, lock_fd: int) -> None:
        self.path = path
        self._db = db
        self._lock_fd = lock_fd
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="wachat-journal", daemon=True)
        self._thread.start()
        self._closed = False
        self._unreported: BaseException | None = None
        #: Rows gathered during this turn of the event loop, by statement, with the futures of
        #: those whose callers wait.
        self._gathered: dict[str, tuple[list[tuple[Any, ...]], list[asyncio.Future[None]]]] = {}
        self._flush_due = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @classmethod
    def prepare(cls, db: sqlite3.Connection, schema: str, where: str) -> None:
        """Create the subclass's tables, or migrate them from ``schema`` (the file's, of
        ``where``)."""

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

    @classmethod
    def _connect(cls, path: Path, api_key: str, base_url: str) -> sqlite3.Connection:
        where = str(path)
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed in-flight row survives a power cut, not just a crash.
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_META)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
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
            cls._check_owner(db, meta, where, api_key, base_url)
            cls.prepare(db, meta.get("schema", cls.SCHEMA), where)
        except sqlite3.Error as exc:
            db.close()
            raise JournalError(
                f"journal {where} cannot be prepared ({type(exc).__name__}: {exc})", path=where
            ) from None
        except BaseException:
            db.close()
            raise
        return db

    @classmethod
    def _check_owner(
        cls,
        db: sqlite3.Connection,
        meta: dict[str, str],
        where: str,
        api_key: str,
        base_url: str,
    ) -> None:
        """A new file is bound to this account and base URL; an old one must be theirs."""
        if "key_fingerprint" not in meta:
            salt = secrets.token_bytes(16)
            rows = {
                "schema": cls.SCHEMA,
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

    # -- the store's thread ---------------------------------------------------------------

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

    # -- the one write path ---------------------------------------------------------------

    async def submit(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the store's thread; returns its result once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._enqueue(_Job(fn, loop, future))
        return await future

    def _enqueue(self, job: _Job) -> None:
        """The one way a job reaches the thread: behind every row gathered before it (an
        outcome recorded, then a claim of the same message again after a 429, must reach the
        file in that order)."""
        self._check_usable()
        self._flush()
        self._jobs.put(job)

    def gather(self, statement: str, row: tuple[Any, ...]) -> None:
        """``row`` for ``statement``, written with the others of this turn of the event loop by
        one ``executemany`` in the next commit; nobody waits (a failure surfaces at the next
        call, or at close)."""
        self._check_usable()
        self._gathered.setdefault(statement, ([], []))[0].append(row)
        self._flush_soon()

    async def gather_waited(self, statement: str, row: tuple[Any, ...]) -> None:
        """As :meth:`gather`, returning once the row is on disk."""
        self._check_usable()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        rows, waiting = self._gathered.setdefault(statement, ([], []))
        rows.append(row)
        waiting.append(future)
        self._flush_soon()
        await future

    def _flush_soon(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """The rows gathered so far, to the thread: one statement each, in the order each
        statement was first gathered (the rows of one statement keep their order; rows of
        two statements gathered in one turn never concern one message: a claim made again
        goes through :meth:`submit`, behind them)."""
        self._flush_due = False
        if not self._gathered:
            return
        gathered, self._gathered = self._gathered, {}
        loop = asyncio.get_running_loop()
        for statement, (rows, waiting) in gathered.items():
            write = _write_all(statement, rows)
            if not waiting:
                self._jobs.put(_Job(write, loop, None))
                continue
            batch: asyncio.Future[None] = loop.create_future()
            self._jobs.put(_Job(write, loop, batch))
            batch.add_done_callback(_settle_all(waiting))

    def _check_usable(self) -> None:
        if self._closed:
            raise JournalError(f"journal {self.path} is closed", path=str(self.path))
        failure, self._unreported = self._unreported, None
        if failure is not None:
            raise failure

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


def _write_all(statement: str, rows: list[tuple[Any, ...]]) -> Callable[[sqlite3.Connection], None]:
    def write(db: sqlite3.Connection) -> None:
        db.executemany(statement, rows)

    return write


def _settle_all(
    waiting: list[asyncio.Future[None]],
) -> Callable[[asyncio.Future[None]], None]:
    """Settle each future of ``waiting`` as one batch write ended."""

    def settle(done: asyncio.Future[None]) -> None:
        error = None if done.cancelled() else done.exception()
        for future in waiting:
            if not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    return settle
