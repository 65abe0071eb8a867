"""WebhookReceiver: deliveries served over aiohttp (the only module that imports aiohttp.web)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from .. import _otel
from .. import _validate as check
from ..errors import InvalidRequestError, WachatError, WebhookPayloadError, WebhookSignatureError
from .events import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    MessageStatusUpdate,
    WebhookEvent,
    parse_event,
)
from .signature import DEFAULT_TOLERANCE, verify_signature

logger = logging.getLogger("wachat_async")

__all__ = ["Admit", "EventHandler", "Receipts", "WebhookReceiver"]

EventHandler = Callable[[WebhookEvent], Awaitable[None]]
#: Decides, before the answer, whether a verified event (and its raw body) is handled: True to
#: handle it, False to acknowledge it as a duplicate; a
#: :class:`~wachat_async.errors.WachatError` (a storage that is down) answers 503, so Wachat
#: may deliver it again.
Admit = Callable[[WebhookEvent, bytes], Awaitable[bool]]
#: Told of each receipt (``messages.update``) accepted, before the answer:
#: ``wa.messages.record_receipt``.
Receipts = Callable[[MessageStatusUpdate], object]


class _SeenDeliveries:
    """Signatures accepted within the tolerance window, so a replay is recognised. Bounded: an
    entry leaves once its timestamp is out of the window (a replay would be refused as stale
    then anyway), or, when ``capacity`` are held, the oldest leaves first."""

    def __init__(self, window: float, capacity: int) -> None:
        self._window = window
        self._capacity = capacity
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def first_time(self, digest: bytes, now: float) -> bool:
        """Record ``digest``; False when it was seen already."""
        expiry = self._expiry
        while expiry and next(iter(expiry.values())) < now:
            expiry.popitem(last=False)
        if digest in expiry:
            return False
        if len(expiry) >= self._capacity:
            expiry.popitem(last=False)
        expiry[digest] = now + 2 * self._window  # covers timestamps up to a window ahead
        return True

    def forget(self, digest: bytes) -> None:
        self._expiry.pop(digest, None)


class WebhookReceiver:
    """Receives deliveries over aiohttp: verifies, parses, answers, then runs your handler.

    Answers 401 when verification fails, 400 when the body is unreadable, and 200 as soon as
    the event is accepted; ``handler`` then runs in its own task, so a slow handler never
    delays Wachat's delivery. A replayed delivery (a signature already accepted within the
    tolerance window, in any encoding) is acknowledged with 200 and not handled again. The
    event type comes from the signed body, never from the unsigned ``X-Wachat-Event`` header.
    With ``admit`` (a bot's dedupe and durable inbox), that step runs before the answer.
    With ``receipts=wa.messages.record_receipt``, each receipt accepted moves its message's
    status (see ``wa.messages.wait_for_status``) before ``handler`` sees it.
    Serve it on its own (``receiver.app()`` answers a POST to any path, so the URL you
    register is the URL it answers) or mount it in your own app::

        receiver = WebhookReceiver(secret, on_event)
        app.router.add_post("/wachat/webhook", receiver.handle)   # or
        app.add_subapp("/wachat", receiver.app())                 # POST /wachat/...
    """

    def __init__(
        self,
        secret: str | bytes | Sequence[str | bytes],
        handler: EventHandler,
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        replay_capacity: int = 100_000,
        admit: Admit | None = None,
        receipts: Receipts | None = None,
    ) -> None:
        if not secret:
            raise InvalidRequestError(
                "a webhook secret is required: deliveries are always verified"
            )
        if not callable(handler):
            raise InvalidRequestError("handler must be an async callable taking the event")
        self._secret = secret
        self._handler = handler
        self._admit = admit
        self._receipts = receipts
        # Checked here, not at the first delivery: a NaN tolerance would accept any timestamp,
        # and a capacity of 0 would fail every delivery.
        self._tolerance = check.seconds("tolerance", tolerance)
        self._seen = _SeenDeliveries(
            self._tolerance, check.positive_int("replay_capacity", replay_capacity)
        )
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"WebhookReceiver(handler={self._handler!r}, secret='***')"

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp handler: answers, then handles the event in the background."""
        status, answer, event = await self.accept(request.headers, await request.read())
        if event is not None:
            self.spawn(event)
        return web.json_response(answer, status=status)

    async def accept(
        self, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], WebhookEvent | None]:
        """A delivery checked, for any web framework: the status and JSON body to answer, and
        the event to hand to :meth:`spawn` once answered (None: nothing to handle)."""
        try:
            digest = verify_signature(
                self._secret,
                headers.get(TIMESTAMP_HEADER),
                body,
                headers.get(SIGNATURE_HEADER),
                tolerance=self._tolerance,
            )
        except WebhookSignatureError as exc:
            logger.warning("rejected webhook delivery: %s", exc)
            return 401, {"success": False, "error": str(exc)}, None
        try:
            event = parse_event(headers, body)
        except WebhookPayloadError as exc:
            return 400, {"success": False, "error": str(exc)}, None
        if not self._seen.first_time(digest, time.time()):
            logger.info("webhook delivery replayed (same signature); acknowledged, not handled")
            return 200, {"success": True, "duplicate": True}, None
        if self._admit is not None:
            try:
                admitted = await self._admit(event, body)
            except WachatError as exc:
                self._seen.forget(digest)  # not handled: a redelivery must be let in
                logger.error("webhook delivery not accepted: %s", exc)
                return 503, {"success": False, "error": str(exc)}, None
            if not admitted:
                return 200, {"success": True, "duplicate": True}, None
        if self._receipts is not None and isinstance(event, MessageStatusUpdate):
            try:
                self._receipts(event)
            except Exception:  # the delivery is still accepted: its handler runs
                logger.exception("recording a receipt failed")
        claimed = headers.get(EVENT_HEADER)
        if claimed and claimed.strip().lower() != event.event.value.lower():
            logger.warning(
                "webhook header %s=%r disagrees with the signed body's event %r; using the body",
                EVENT_HEADER,
                claimed,
                event.event.value,
            )
        return 200, {"success": True}, event

    def spawn(self, event: WebhookEvent) -> None:
        """Run the handler on ``event`` in a task of its own (call it on the running loop)."""
        task = asyncio.get_running_loop().create_task(self._run(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, event: WebhookEvent) -> None:
        try:
            with _otel.delivery(event.event.value, event.instance):
                await self._handler(event)
        except Exception:
            logger.exception("webhook handler failed for %s", event.event.value)

    async def drain(self) -> None:
        """Wait for the handlers still running."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def app(self, path: str | None = None) -> web.Application:
        """A small app that answers a POST to ``path``, or to any path when None (so it works
        wherever it is served or mounted); handlers finish before it shuts down."""
        app = web.Application()
        app.router.add_post("/{tail:.*}" if path is None else path, self.handle)

        async def finish(_: web.Application) -> None:
            await self.drain()

        app.on_cleanup.append(finish)
        return app
