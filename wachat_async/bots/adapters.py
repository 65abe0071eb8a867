"""The bot's webhook in the web frameworks bots run in. Each answers a POST at the path you mount
it on, exactly as :class:`~wachat_async.webhooks.WebhookReceiver` does over aiohttp (401
unsigned, 400 unreadable, 503 storage down, 200 taken in), then handles the message after the
answer.

- ASGI (Starlette, FastAPI, any ASGI server): :func:`asgi_app`, on the server's event loop,
  with an :class:`~wachat_async.AsyncWachat`.
- Flask and Django (sync): :func:`flask_view` and :func:`django_view`, with a bot built on a
  :class:`~wachat_async.Wachat`; the handlers (still ``async def``) run on Wachat's own event
  loop thread, so the framework's workers never run an event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from multidict import CIMultiDict

from ..webhooks.receiver import WebhookReceiver

__all__ = ["SyncReceiver", "asgi_app", "django_view", "flask_view"]

#: The largest delivery body read (aiohttp's own default for the receiver).
MAX_BODY = 1024**2

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def asgi_app(receiver: WebhookReceiver) -> ASGIApp:
    """An ASGI app serving ``receiver`` (``bot.receiver(secret)``); mount it where the webhook
    URL points: ``app.mount("/wachat", asgi_app(bot.receiver(secret)))``. On the lifespan's
    shutdown (when it is the app served) the handlers under way finish first."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await receiver.drain()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await _answer(send, 405, {"success": False, "error": "webhooks are POSTed"})
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                await _answer(send, 413, {"success": False, "error": "delivery too large"})
                return
        headers = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
        )
        status, answer, event = await receiver.accept(headers, bytes(body))
        await _answer(send, status, answer)
        if event is not None:
            receiver.spawn(event)

    return app


async def _answer(send: Send, status: int, answer: dict[str, Any]) -> None:
    payload = json.dumps(answer).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class SyncReceiver:
    """A receiver for synchronous frameworks: :meth:`handle` blocks the calling worker thread
    only for the checks and the take-in; the handlers run on ``loop`` (Wachat's loop thread,
    as ``bot.sync_receiver(secret)`` builds it)."""

    def __init__(
        self,
        receiver: WebhookReceiver,
        loop: asyncio.AbstractEventLoop,
        run: Callable[[Any], Any],
    ) -> None:
        self._receiver = receiver
        self._loop = loop
        self._run = run

    def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """The status and JSON body to answer (``headers`` looked up case-insensitively)."""
        status, answer, event = self._run(self._receiver.accept(CIMultiDict(headers), body))
        if event is not None:
            self._loop.call_soon_threadsafe(self._receiver.spawn, event)
        return status, answer

    def drain(self) -> None:
        """Wait for the handlers under way."""
        self._run(self._receiver.drain())


def flask_view(receiver: SyncReceiver) -> Callable[[], Any]:
    """A Flask view: ``app.add_url_rule("/wachat", view_func=flask_view(r), methods=["POST"])``."""
    flask: Any = importlib.import_module("flask")

    def view() -> Any:
        request = flask.request
        if request.content_length is not None and request.content_length > MAX_BODY:
            return flask.jsonify({"success": False, "error": "delivery too large"}), 413
        status, answer = receiver.handle(request.headers, request.get_data())
        return flask.jsonify(answer), status

    view.__name__ = "wachat_webhook"
    return view


def django_view(receiver: SyncReceiver) -> Callable[[Any], Any]:
    """A Django view (CSRF-exempt: deliveries are signed instead):
    ``path("wachat", django_view(r))``."""
    http: Any = importlib.import_module("django.http")
    csrf: Any = importlib.import_module("django.views.decorators.csrf")

    def view(request: Any) -> Any:
        if request.method != "POST":
            return http.HttpResponseNotAllowed(["POST"])
        if int(request.headers.get("Content-Length") or 0) > MAX_BODY:
            return http.JsonResponse({"success": False, "error": "delivery too large"}, status=413)
        status, answer = receiver.handle(request.headers, request.body)
        return http.JsonResponse(answer, status=status)

    exempt: Callable[[Any], Any] = csrf.csrf_exempt(view)
    return exempt
