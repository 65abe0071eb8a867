"""A message's life: each sent message's id linked to where it went, its status moved forward
only, as ``messages.update`` receipts arrive.

A status only moves forward: ``sent`` -> ``delivered`` -> ``read``, or ``sent`` -> ``failed``.
A receipt that would move it back (a ``delivered`` arriving after the ``read``, a ``failed``
after a ``delivered``) changes nothing, so receipts may arrive in any order.

The log lives in memory and is bounded (:data:`CAPACITY` messages; the oldest leaves first).
While a journal is attached (a broadcast's, for its run, or ``messages.recording(path)``),
every status is also written to the journal's row of that message.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import attrs

from .errors import InvalidRequestError, MessageFailedError, WaitTimeoutError

#: How many messages the in-memory log holds; the oldest leaves first.
CAPACITY = 100_000


class MessageStatus(enum.StrEnum):
    """Where a sent message is: accepted by WhatsApp, delivered to the phone, read, or failed."""

    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


FAILED = MessageStatus.FAILED

#: How far along each status is; ``failed`` only follows ``sent``.
_RANK = {MessageStatus.SENT: 1, MessageStatus.DELIVERED: 2, MessageStatus.READ: 3}

#: Receipt status spellings (Evolution API / Baileys names and numbers, and ours) and what
#: each means. ``PENDING`` (not yet on WhatsApp's server) is read as sent.
_SPELLINGS: dict[str | int, MessageStatus] = {
    "PENDING": MessageStatus.SENT,
    "SERVER_ACK": MessageStatus.SENT,
    "SENT": MessageStatus.SENT,
    "DELIVERY_ACK": MessageStatus.DELIVERED,
    "DELIVERED": MessageStatus.DELIVERED,
    "READ": MessageStatus.READ,
    "PLAYED": MessageStatus.READ,
    "ERROR": MessageStatus.FAILED,
    "FAILED": MessageStatus.FAILED,
    0: MessageStatus.FAILED,
    1: MessageStatus.SENT,
    2: MessageStatus.SENT,
    3: MessageStatus.DELIVERED,
    4: MessageStatus.READ,
    5: MessageStatus.READ,
}


def receipt_status(value: Any) -> MessageStatus | None:
    """What a receipt's ``status`` means (None: a spelling this library does not know)."""
    if isinstance(value, str):
        return _SPELLINGS.get(value.strip().upper())
    if isinstance(value, int) and not isinstance(value, bool):
        return _SPELLINGS.get(value)
    return None


def advanced(current: MessageStatus | None, new: MessageStatus) -> MessageStatus | None:
    """The status after ``new`` arrives at ``current``, or None when it changes nothing."""
    if current is None:
        return new
    if current is MessageStatus.FAILED or current is new:
        return None
    if new is MessageStatus.FAILED:
        return new if current is MessageStatus.SENT else None
    return new if _RANK[new] > _RANK[current] else None


def reached(current: MessageStatus | None, target: MessageStatus) -> bool:
    """Whether ``current`` is ``target`` or beyond it (``failed`` reaches only ``failed``)."""
    if current is None:
        return False
    if target is MessageStatus.FAILED or current is MessageStatus.FAILED:
        return current is target
    return _RANK[current] >= _RANK[target]


@attrs.frozen
class MessageRecord:
    """What the log knows of one message."""

    message_id: str
    status: MessageStatus | None
    #: The instance (API name) that sent it, when known.
    instance: str | None = None
    #: The recipient's digits, when known.
    recipient: str | None = None
    #: The broadcast's campaign and the message's key, for a broadcast message.
    campaign: str | None = None
    key: str | None = None
    #: When its status last moved (``time.time()``).
    updated_at: float = attrs.field(factory=time.time, eq=False)


class Receipt(Protocol):
    """What the log needs of a receipt (a :class:`~wachat_async.webhooks.MessageStatusUpdate`)."""

    @property
    def message_id(self) -> str | None: ...
    @property
    def instance(self) -> str | None: ...
    @property
    def recipient(self) -> str | None: ...
    @property
    def message_status(self) -> MessageStatus | None: ...


class ReceiptJournal(Protocol):
    """Where statuses are written through while attached (a :class:`~.bulk.journal.Journal`)."""

    def record_receipt(self, message_id: str, status: MessageStatus) -> None: ...


class _Waiter:
    __slots__ = ("future", "loop", "target")

    def __init__(
        self, target: MessageStatus, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]
    ) -> None:
        self.target = target
        self.loop = loop
        self.future = future


def _wake(waiter: _Waiter, record: MessageRecord) -> None:
    if not waiter.future.done():
        waiter.future.set_result(record)


class MessageLog:
    """Sent messages by id, their status moved forward only by receipts. Thread-safe: a
    receiver on one loop may feed a client waiting on another (the blocking client's)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._records: OrderedDict[str, MessageRecord] = OrderedDict()
        self._waiters: dict[str, list[_Waiter]] = {}
        #: Journals attached, each with the loop it is written from.
        self._journals: list[tuple[ReceiptJournal, asyncio.AbstractEventLoop]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[MessageRecord]:
        with self._lock:
            return iter(list(self._records.values()))

    def get(self, message_id: str) -> MessageRecord | None:
        return self._records.get(message_id)

    def sent(
        self,
        message_id: str,
        *,
        instance: str,
        recipient: str,
        campaign: str | None = None,
        key: str | None = None,
    ) -> None:
        """Record a message the server accepted (status ``sent``, unless a receipt came
        first)."""
        with self._lock:
            known = self._records.get(message_id)
            if known is None:
                record = MessageRecord(
                    message_id, MessageStatus.SENT, instance, recipient, campaign, key
                )
            else:  # a receipt came first: its status stays
                record = attrs.evolve(
                    known,
                    status=known.status or MessageStatus.SENT,
                    instance=instance,
                    recipient=recipient,
                    campaign=campaign if campaign is not None else known.campaign,
                    key=key if key is not None else known.key,
                )
            self._put(record)

    def receive(self, receipt: Receipt) -> MessageRecord | None:
        """Move a message's status as ``receipt`` says; its record (None: the receipt names no
        message or no status this library knows)."""
        message_id, status = receipt.message_id, receipt.message_status
        if not message_id or status is None:
            return None
        return self.advance(
            message_id, status, instance=receipt.instance, recipient=receipt.recipient
        )

    def advance(
        self,
        message_id: str,
        status: MessageStatus,
        *,
        instance: str | None = None,
        recipient: str | None = None,
    ) -> MessageRecord:
        """Move ``message_id`` to ``status`` unless that would move it back; its record."""
        with self._lock:
            known = self._records.get(message_id)
            moved = advanced(None if known is None else known.status, status)
            if known is not None and moved is None:
                return known
            record = (
                MessageRecord(message_id, moved, instance, recipient)
                if known is None
                else attrs.evolve(known, status=moved, updated_at=time.time())
            )
            self._put(record)
            waiters = self._waiters.get(message_id, [])
            woken = [w for w in waiters if reached(moved, w.target) or moved is FAILED]
            for waiter in woken:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(message_id, None)
            journals = list(self._journals)
        for journal, loop in journals:
            assert moved is not None
            _call_on(loop, journal.record_receipt, message_id, moved)
        for waiter in woken:
            _call_on(waiter.loop, _wake, waiter, record)
        return record

    def _put(self, record: MessageRecord) -> None:
        self._records[record.message_id] = record
        self._records.move_to_end(record.message_id)
        while len(self._records) > self._capacity:
            self._records.popitem(last=False)

    async def wait_for(
        self, message_id: str, status: MessageStatus | str, *, timeout: float | None
    ) -> MessageRecord:
        """Return once ``message_id`` reached ``status`` or beyond; MessageFailedError when it
        failed instead, WaitTimeoutError after ``timeout`` seconds (None: no limit)."""
        target = _target(status)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[MessageRecord] = loop.create_future()
        waiter = _Waiter(target, loop, future)
        with self._lock:
            known = self._records.get(message_id)
            if known is None or not (reached(known.status, target) or _failed(known)):
                self._waiters.setdefault(message_id, []).append(waiter)
            else:
                future.set_result(known)
        try:
            async with asyncio.timeout(timeout):
                record = await future
        except TimeoutError:
            last = self.get(message_id)
            raise WaitTimeoutError(
                f"message {message_id} did not reach {target.value} within {timeout:g} s "
                f"(last status: {last.status.value if last and last.status else 'none'})",
                last_state=last,
            ) from None
        finally:
            with self._lock:
                waiters = self._waiters.get(message_id)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[message_id]
        if _failed(record) and target is not MessageStatus.FAILED:
            raise MessageFailedError(f"message {message_id} failed", record=record)
        return record

    # -- journals ---------------------------------------------------------------------------

    def attach(self, journal: ReceiptJournal) -> None:
        """Write every status to ``journal`` from now on, and those known already (call it
        on the loop the journal is used from: a receipt from another thread hops there)."""
        with self._lock:
            self._journals.append((journal, asyncio.get_running_loop()))
            known = [r for r in self._records.values() if r.status is not None]
        for record in known:
            assert record.status is not None
            journal.record_receipt(record.message_id, record.status)

    def detach(self, journal: ReceiptJournal) -> None:
        with self._lock:
            self._journals = [(j, loop) for j, loop in self._journals if j is not journal]


def _failed(record: MessageRecord) -> bool:
    return record.status is MessageStatus.FAILED


def _target(status: MessageStatus | str) -> MessageStatus:
    try:
        return MessageStatus(status)
    except ValueError:
        raise InvalidRequestError(
            f"status must be one of {', '.join(s.value for s in MessageStatus)}; got {status!r}"
        ) from None


def _call_on(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn`` on ``loop``: at once when it is the running one, else thread-safely."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        fn(*args)
        return
    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
        loop.call_soon_threadsafe(fn, *args)
