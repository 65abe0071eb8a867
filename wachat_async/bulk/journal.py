"""The bulk journal: what a provisioning run or a broadcast is about to do, and what it did.

One SQLite file holds both kinds of row, keyed by what must never happen twice: a provisioning
row per friendly instance name, a message row per campaign and message key (a key is one
campaign's: a later campaign may use it again). A row is written and committed
(fsync'd, ``synchronous=FULL``) as ``in_flight`` before its request is sent, then ``done``,
``failed`` or ``unknown``. A re-run skips what is done and reconciles (creates) or reports
(messages) what was in flight.

A journal belongs to one account, one base URL and one process at a time, and every row
reaches its file through one write path: that is its store's (:mod:`._store`).
"""

from __future__ import annotations

import sqlite3
import time

import attrs

from ..errors import JournalError, OutcomeUnknownError, WachatError
from ._store import Store

IN_FLIGHT, DONE, FAILED, UNKNOWN = "in_flight", "done", "failed", "unknown"
#: 3: message rows keyed by campaign and key (2 keyed them by key alone). 4: message rows
#: carry the status receipts gave (``receipt``: sent, delivered, read or failed).
_SCHEMA_VERSION = "4"
_ERROR_CHARS = 500

_PROVISION_TABLE = """
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
    receipt TEXT CHECK (receipt IN ('sent', 'delivered', 'read', 'failed')),
    receipt_at REAL,
    PRIMARY KEY (campaign, key));
CREATE INDEX IF NOT EXISTS messages_by_id ON messages (message_id);
"""

#: A schema-3 journal's message rows gain the receipt columns as the journal opens.
_FROM_SCHEMA_3 = f"""
BEGIN IMMEDIATE;
ALTER TABLE messages ADD COLUMN receipt TEXT
    CHECK (receipt IN ('sent', 'delivered', 'read', 'failed'));
ALTER TABLE messages ADD COLUMN receipt_at REAL;
UPDATE meta SET value = '{_SCHEMA_VERSION}' WHERE key = 'schema';
COMMIT;
"""

#: A schema-2 journal's message rows, moved into the schema-3 table as the journal opens.
_FROM_SCHEMA_2 = f"""
BEGIN IMMEDIATE;
ALTER TABLE messages RENAME TO messages_2;
{_MESSAGES_TABLE}
INSERT INTO messages (key, campaign, instance, recipient, state, message_id, started_at, error,
    updated_at) SELECT key, campaign, instance, recipient, state, message_id, started_at,
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


#: A receipt's status, moved forward only: ``sent`` < ``delivered`` < ``read``, and
#: ``failed`` only after ``sent`` (the rule of :func:`wachat_async._receipts.advanced`).
#: Plain ``?`` placeholders, the status given three times: sqlite3 takes numbered ones
#: (``?1``) with a sequence only until Python 3.14.
_UPDATE_RECEIPT = """
UPDATE messages SET receipt = ?, receipt_at = ?
WHERE message_id = ? AND CASE COALESCE(receipt, '')
    WHEN '' THEN 1
    WHEN 'sent' THEN ? != 'sent'
    WHEN 'delivered' THEN ? = 'read'
    ELSE 0 END
"""

_RECEIPT_COUNTS = """
SELECT instance,
    SUM(state = 'done'),
    SUM(receipt IN ('delivered', 'read')),
    SUM(receipt = 'read'),
    SUM(state = 'failed' OR receipt = 'failed'),
    SUM(receipt IS NOT NULL)
FROM messages WHERE campaign = ? GROUP BY instance ORDER BY instance
"""


@attrs.frozen
class ReceiptCounts:
    """One instance's messages of a campaign: ``sent`` (accepted by the server),
    ``delivered`` (a receipt said delivered or read), ``read``, ``failed`` (refused at send,
    or a receipt said failed) and ``receipts`` (messages any receipt was recorded for)."""

    instance: str
    sent: int
    delivered: int
    read: int
    failed: int
    receipts: int


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


class Journal(Store):
    """An open journal. Use ``async with await Journal.open(path, api_key=..., base_url=...)``."""

    SCHEMA = _SCHEMA_VERSION

    @classmethod
    def prepare(cls, db: sqlite3.Connection, schema: str, where: str) -> None:
        if schema == "2":
            db.executescript(_FROM_SCHEMA_2)
        elif schema == "3":
            db.executescript(_FROM_SCHEMA_3)
        elif schema != _SCHEMA_VERSION:
            raise JournalError(
                f"journal {where} has schema {schema}, which this version of wachat-async "
                "does not know (a newer one wrote it?)",
                path=where,
            )
        db.executescript(_PROVISION_TABLE + _MESSAGES_TABLE)

    # -- provisioning rows ----------------------------------------------------------------

    async def provision_entry(self, instance_name: str) -> ProvisionEntry | None:
        def read(db: sqlite3.Connection) -> ProvisionEntry | None:
            row = db.execute(
                "SELECT instance_name, state, api_instance_name, started_at, error "
                "FROM provision WHERE instance_name = ?",
                (instance_name,),
            ).fetchone()
            return None if row is None else ProvisionEntry(*row)

        return await self.submit(read)

    async def provision_entries(self) -> list[ProvisionEntry]:
        def read(db: sqlite3.Connection) -> list[ProvisionEntry]:
            rows = db.execute(
                "SELECT instance_name, state, api_instance_name, started_at, error FROM provision"
            ).fetchall()
            return [ProvisionEntry(*row) for row in rows]

        return await self.submit(read)

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

        await self.submit(write)

    # -- message rows ---------------------------------------------------------------------

    async def message_entry(self, campaign: str, key: str) -> MessageEntry | None:
        return await self.submit(lambda db: _read_message(db, campaign, key))

    async def message_entries(self, campaign: str | None = None) -> list[MessageEntry]:
        def read(db: sqlite3.Connection) -> list[MessageEntry]:
            rows = (
                db.execute(_SELECT_MESSAGE).fetchall()
                if campaign is None
                else db.execute(f"{_SELECT_MESSAGE} WHERE campaign = ?", (campaign,)).fetchall()
            )
            return [MessageEntry(*row) for row in rows]

        return await self.submit(read)

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

        return await self.submit(read)

    async def has_messages(self, campaign: str) -> bool:
        """Whether any message of ``campaign`` is recorded (a first run has none to skip)."""

        def read(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT 1 FROM messages WHERE campaign = ? LIMIT 1", (campaign,))
            return row.fetchone() is not None

        return await self.submit(read)

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

        return await self.submit(claim)

    async def claim_new_message(
        self, key: str, *, campaign: str, instance: str, recipient: str, started_at: float
    ) -> None:
        """Record as in flight, on disk, a message of a campaign the journal had no message of
        when this run began (so nothing can be settled yet). Claims made in one turn of the
        event loop are written by one statement, in one commit."""
        row = (key, campaign, instance, recipient, started_at, started_at)
        await self.gather_waited(_INSERT_CLAIM, row)

    def record_receipt(self, message_id: str, status: str) -> None:
        """Move the status of the message ``message_id`` (forward only); not waited for,
        written with the next commit. Once closed, nothing: a receipt that came from another
        thread as it closed is written by ``messages.save_receipts``."""
        if self._closed:
            return
        said = str(status)
        self.gather(_UPDATE_RECEIPT, (said, time.time(), message_id, said, said))

    async def receipt_counts(self, campaign: str) -> list[ReceiptCounts]:
        """Per instance of ``campaign``: sent, delivered, read and failed (see
        :class:`ReceiptCounts`), by instance name."""

        def read(db: sqlite3.Connection) -> list[ReceiptCounts]:
            rows = db.execute(_RECEIPT_COUNTS, (campaign,)).fetchall()
            return [ReceiptCounts(row[0], *(int(n or 0) for n in row[1:])) for row in rows]

        return await self.submit(read)

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
        self.gather(_UPDATE_OUTCOME, (state, message_id, error, time.time(), campaign, key))
