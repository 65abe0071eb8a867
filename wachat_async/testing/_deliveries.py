"""Signed webhook deliveries: each event POSTed, in the background, to each webhook that wants it.

A delivery is ``POST <webhook url>`` with the JSON body
``{"event", "instance", "data", "date_time"}`` and the headers

- ``X-Wachat-Event``: the event name (``messages.upsert``, ``connection.update``, ...);
- ``X-Wachat-Timestamp``: Unix seconds;
- ``X-Wachat-Signature``: ``sha256=<hex>``, the HMAC-SHA256 keyed by the webhook's secret over
  ``"<timestamp>.<raw body>"``;
- ``X-Wachat-Webhook-Id``.

The signature is computed here, with :mod:`hmac` directly, and never with the library's own
``wachat_async.webhooks.sign``: a signing bug in the library must not agree with itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import Counter
from typing import Any

import aiohttp
import attrs

from ._changes import Changes
from ._state import FakeWebhook, now_iso

#: How long a receiver may take to answer one delivery.
DELIVERY_TIMEOUT = 10.0


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Wachat-Signature`` value: ``sha256=`` and the hex HMAC-SHA256."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@attrs.frozen
class Delivery:
    """A webhook delivery attempt: where, what, and how the receiver answered."""

    webhook_id: int
    #: Where it was POSTed.
    url: str
    event: str
    instance: str | None
    status: int | None
    error: str | None
    #: When the attempt finished (wall clock, ``time.time()``).
    at: float = attrs.field(factory=time.time)

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class Deliverer:
    """Sends deliveries on the running loop and keeps their log (:attr:`log`, oldest first);
    each finished attempt is also published to ``changes`` (kind ``delivery``)."""

    def __init__(self, stats: Counter[str], changes: Changes) -> None:
        self.stats = stats
        self.changes = changes
        self.log: list[Delivery] = []
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = True

    def open(self) -> None:
        """Accept deliveries (again, after :meth:`close`)."""
        self._accepting = True

    def deliver(self, hook: FakeWebhook, event: str, instance: str, data: dict[str, Any]) -> None:
        if not self._accepting:
            return
        task = asyncio.get_running_loop().create_task(self._post(hook, event, instance, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Wait until every delivery started so far has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Finish the deliveries under way, start no more, close the HTTP session."""
        self._accepting = False
        await self.flush()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, hook: FakeWebhook, event: str, instance: str, data: Any) -> None:
        body = json.dumps(
            {"event": event, "instance": instance, "data": data, "date_time": now_iso()}
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Wachat-Event": event,
            "X-Wachat-Timestamp": timestamp,
            "X-Wachat-Signature": signature(hook.secret, timestamp, body),
            "X-Wachat-Webhook-Id": str(hook.id),
        }
        if self._session is None:
            self._session = aiohttp.ClientSession()
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                hook.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT),
            ) as resp:
                status = resp.status
                await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivery = Delivery(hook.id, hook.url, event, instance, status, error)
        self.log.append(delivery)
        self.stats["deliveries"] += 1
        self.changes.publish("delivery", lambda: {"delivery": delivery.as_json()})
