"""The dev phone: the sandbox in a browser, to watch it and to act as the phone and the customer.

Twilio's Dev Phone is the model. One static page (``devphone/`` beside this module: plain
HTML, CSS and JavaScript, no build step, nothing fetched from elsewhere) shows every instance
with its state and live QR code ("Scan with phone", "Disconnect"), a chat per instance drawn
from what the client sent and what customers answered, a form to answer as the customer, and
the webhook delivery log. It acts through the control endpoints (:mod:`._control`) and follows
the sandbox through one event stream.

Routes (in the control application, so under ``/_sandbox``; the server root ``/`` redirects to
the page):

``GET /phone/`` (and its ``devphone.js``, ``devphone.css``)
    The page. It holds no data, so it is served to anyone, whatever the server is bound to.
``GET /events``
    Server-Sent Events (``text/event-stream``): first a ``snapshot`` (``{"instances": [view
    + "sent" + "received"], "deliveries": [...]}``, the newest :data:`SNAPSHOT_MESSAGES`
    messages and :data:`SNAPSHOT_DELIVERIES` deliveries), then each change as it happens
    (kinds and data in :mod:`._changes`), each as ``id``/``event``/``data`` lines, with a
    comment line every :attr:`DevPhone.keepalive` seconds. A stream whose connection is lost
    (a closed tab) frees its place among the :attr:`DevPhone.max_streams` at once. The stream
    ends when the server closes, or when this watcher falls too far behind (a ``reset`` event
    first): reconnect and a new snapshot follows.

**Authorization.** The event stream is a control endpoint like the others: open on a loopback
host, else it needs ``Authorization: Bearer <key>``. There is no key in a query string: the page
reads the stream with ``fetch`` (which can send the header), not ``EventSource`` (which cannot).
On a server bound elsewhere the page asks for the key, keeps it in ``sessionStorage`` (this tab
only, gone when the tab closes) and sends it with every request.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from ._deliveries import Deliverer
from ._state import Sandbox
from ._web import Refused

#: Per instance, how many of the newest sent and of the newest received messages a snapshot has.
SNAPSHOT_MESSAGES = 500
#: How many of the newest deliveries a snapshot has.
SNAPSHOT_DELIVERIES = 200

#: The page's files: name in the URL -> (file in ``devphone/``, content type).
_FILES = {
    "": ("index.html", "text/html"),
    "devphone.js": ("devphone.js", "text/javascript"),
    "devphone.css": ("devphone.css", "text/css"),
}

#: Names of the routes served without a key (the page itself, which holds no data).
PUBLIC_ROUTES = frozenset({"devphone.redirect", "devphone.file"})

# Beside the policy every answer has (``_web.SECURITY_HEADERS``): always the newest page.
_PAGE_HEADERS = {"Cache-Control": "no-store"}


@functools.cache  # read once per process, not at every server start
def _load_files() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("wachat_async.testing").joinpath("devphone")
    return {
        url: (folder.joinpath(file).read_bytes(), ctype) for url, (file, ctype) in _FILES.items()
    }


def sse(kind: str, data: Any, seq: int | None = None) -> bytes:
    """One Server-Sent Event (JSON never holds a raw newline, so one ``data`` line)."""
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class DevPhone:
    """The page and its event stream (see the module docstring)."""

    #: Seconds between keep-alive comments (they also reveal a browser that went away).
    keepalive = 15.0
    #: Seconds one write may wait for a slow reader before its stream is dropped.
    write_timeout = 10.0
    #: Event streams open at once (every browser tab holds one); more get 503.
    max_streams = 64

    def __init__(self, sandbox: Sandbox, deliverer: Deliverer) -> None:
        self._sandbox = sandbox
        self._deliverer = deliverer
        self._changes = sandbox.changes

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/phone", self._redirect, name="devphone.redirect")
        router.add_get("/phone/{file:[a-z.]*}", self._file, name="devphone.file")
        router.add_get("/events", self._events)

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.path + "/")

    async def _file(self, request: web.Request) -> web.Response:
        found = _load_files().get(request.match_info["file"])
        if found is None:
            raise Refused(f"No dev phone file {request.match_info['file']!r}", status=404)
        body, content_type = found
        return web.Response(
            body=body, content_type=content_type, charset="utf-8", headers=_PAGE_HEADERS
        )

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as it is now."""
        instances = [
            self._sandbox.view(inst)
            | {
                "sent": inst.sent[-SNAPSHOT_MESSAGES:],
                "received": inst.received[-SNAPSHOT_MESSAGES:],
            }
            for inst in list(self._sandbox.instances.values())
        ]
        deliveries = [d.as_json() for d in self._deliverer.log[-SNAPSHOT_DELIVERIES:]]
        return {"instances": instances, "deliveries": deliveries}

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if self._changes.watchers >= self.max_streams:
            raise Refused(
                f"Too many event streams open ({self.max_streams}); close some dev phone tabs",
                status=503,
            )
        # Subscribe and take the snapshot in one step (no await between): every change after
        # the snapshot is in the subscription, and none before it.
        subscription = self._changes.subscribe()
        snapshot = self.snapshot()
        # A closed tab frees its slot now, not at the next write (keep-alive) that would fail.
        watch = _ConnectionWatch.install(request, subscription.end)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await self._write(response, sse("snapshot", snapshot))
            while True:
                try:
                    change = await subscription.next(self.keepalive)
                except TimeoutError:
                    await self._write(response, b": keep-alive\n\n")
                    continue
                if change is None:
                    break
                await self._write(response, sse(change.kind, change.data, change.seq))
            if subscription.overflowed:
                await self._write(response, sse("reset", {"reason": "fell behind"}))
        except ConnectionError:
            pass  # the browser went away
        except TimeoutError:
            # It reads too slowly (a suspended tab): drop the connection, unsent data and all.
            # A browser still there reconnects, to a fresh snapshot.
            if request.transport is not None:
                request.transport.abort()
        finally:
            if watch is not None:
                watch.remove()
            subscription.end()
        return response

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        async with asyncio.timeout(self.write_timeout):
            await response.write(data)


class _ConnectionWatch(asyncio.Protocol):
    """Stands between a connection's transport and aiohttp's protocol to call ``on_lost`` as
    soon as the connection is lost (aiohttp tells a handler only when its next write fails).
    Everything else passes through unchanged."""

    def __init__(
        self, transport: asyncio.Transport, inner: asyncio.Protocol, on_lost: Callable[[], None]
    ) -> None:
        self._transport = transport
        self._inner = inner
        self._on_lost = on_lost

    @classmethod
    def install(cls, request: web.Request, on_lost: Callable[[], None]) -> _ConnectionWatch | None:
        """Watch ``request``'s connection (None when it cannot be watched: then only a failed
        write reveals its loss)."""
        transport = request.transport
        if transport is None or transport.is_closing():
            on_lost()  # already gone
            return None
        inner = transport.get_protocol()
        if not isinstance(transport, asyncio.Transport) or not isinstance(inner, asyncio.Protocol):
            return None
        watch = cls(transport, inner, on_lost)
        transport.set_protocol(watch)
        return watch

    def remove(self) -> None:
        """Give the connection back to aiohttp's protocol (it may serve another request)."""
        if self._transport.get_protocol() is self:
            self._transport.set_protocol(self._inner)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost()
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()
