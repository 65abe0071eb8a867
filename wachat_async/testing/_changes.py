"""The sandbox's live feed: every change a watcher may want to see, as it happens.

The dev phone page (:mod:`._devphone`) follows the sandbox through it. The sandbox and the
deliverer :meth:`~Changes.publish` a change (a kind and a JSON-ready dict); each open event
stream holds a :class:`Subscription`, a bounded queue of its own, and reads from it. Nothing is
built while nobody watches (``publish`` takes a function that makes the data), so a benchmark
pays nothing for the feed.

Kinds and their data:

``instance``
    ``{"why": "created" | "state" | "qr", "instance": <view>}`` (the control API's view of an
    instance, see :mod:`._control`): created, connected or disconnected, or a new QR code.
``instance.deleted``
    ``{"api_name": str}``.
``message``
    ``{"instance": <api name>, "direction": "out" | "in", "message": <record>}``: a send the
    client made (``{path, body, id, at}``) or a customer's message (``{id, from, push_name,
    text, at}``).
``receipt``
    ``{"instance": <api name>, "id": <message id>, "status": sent | delivered | read |
    failed}``: a sent message's status, after a receipt went out.
``delivery``
    ``{"delivery": {webhook_id, event, instance, status, error, at}}``.

A subscriber that falls :data:`MAX_PENDING` changes behind is dropped (its stream ends and the
page reconnects, to a fresh snapshot) rather than letting the server's memory grow.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable
from typing import Any

import attrs

#: Changes a subscriber may have waiting before it is dropped.
MAX_PENDING = 1000


@attrs.frozen
class Change:
    """One change; ``seq`` grows with each change published to a watcher."""

    seq: int
    kind: str
    data: dict[str, Any]


class Subscription:
    """One watcher's queue. :meth:`next` gives the next change, or None once it has ended."""

    def __init__(self, hub: Changes, max_pending: int) -> None:
        self._hub = hub
        self._max_pending = max_pending
        self._pending: collections.deque[Change] = collections.deque()
        self._wakeup = asyncio.Event()
        self._ended = False
        #: Whether it ended because it fell too far behind.
        self.overflowed = False

    @property
    def ended(self) -> bool:
        return self._ended

    def put(self, change: Change) -> None:
        if self._ended:
            return
        if len(self._pending) >= self._max_pending:
            self.overflowed = True
            self.end()
            return
        self._pending.append(change)
        self._wakeup.set()

    def end(self) -> None:
        """End this subscription: :meth:`next` gives what is pending, then None (at once when
        it overflowed: what was pending is stale then)."""
        self._ended = True
        if self.overflowed:
            self._pending.clear()
        self._hub._discard(self)
        self._wakeup.set()

    async def next(self, timeout: float) -> Change | None:
        """The next change, or None when the subscription has ended. Raises TimeoutError when
        none came within ``timeout`` seconds (time for a keep-alive)."""
        if not self._pending and not self._ended:
            self._wakeup.clear()
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        if self._pending:
            return self._pending.popleft()
        return None


class Changes:
    """The hub: publishes changes to every subscription. Runs on the server's loop."""

    def __init__(self, *, max_pending: int = MAX_PENDING) -> None:
        self._max_pending = max_pending
        self._subscriptions: set[Subscription] = set()
        self._seq = itertools.count(1)
        self._open = True

    @property
    def watchers(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscriptions)

    def open(self) -> None:
        """Accept subscriptions (again, after :meth:`close`)."""
        self._open = True

    def subscribe(self) -> Subscription:
        """A new subscription; already ended when the hub is closed."""
        sub = Subscription(self, self._max_pending)
        if self._open:
            self._subscriptions.add(sub)
        else:
            sub.end()
        return sub

    def publish(self, kind: str, data: Callable[[], dict[str, Any]]) -> None:
        """Hand a change to every subscription; ``data()`` is called only when one is open."""
        if not self._subscriptions:
            return
        change = Change(next(self._seq), kind, data())
        for sub in list(self._subscriptions):
            sub.put(change)

    def close(self) -> None:
        """End every subscription (their streams finish what is pending, then end) and take
        no more until :meth:`open`."""
        self._open = False
        for sub in list(self._subscriptions):
            sub.end()

    def _discard(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)
