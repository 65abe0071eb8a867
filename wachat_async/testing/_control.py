"""Sandbox control over HTTP: what a phone and a customer do, from outside the server's process.

The real API lives under ``/api/v1``; control lives under :data:`CONTROL_PREFIX` (``/_sandbox``)
at the server root, a prefix the real API never uses. JSON in, JSON out: ``{"success": true,
...}``, or ``{"success": false, "error": "..."}`` with 400 (bad input), 401 (no key, see below),
404 (no such instance or endpoint) or 409 (not possible in the instance's state).

``{name}`` is an instance's API name, or its friendly name when no other instance shares it.

Endpoints (paths under ``/_sandbox``; "answer" lists the keys beside ``"success": true``):

``GET /instances``
    Answer: ``count``, ``instances`` (a view of each, see (*)).
``GET /instances/{name}``
    Answer: ``instance`` (its view).
``POST /instances/{name}/scan``, optional body ``{"profile_name": str}``
    Connect it as a phone scan would; delivers ``connection.update`` (open, reason 200).
    Answer: ``instance``.
``POST /instances/{name}/disconnect``
    The phone unlinks: state ``close``; delivers ``connection.update`` (close, reason 401).
    Answer: ``instance``.
``POST /instances/{name}/rotate-qr``
    Issue a new QR code now; delivers ``qrcode.updated``. 409 when it is connected, 400 for
    an integration without QR codes. Answer: ``instance``.
``POST /instances/{name}/messages``, body ``{"from": "628...", "text": str, "push_name"?: str}``
    A customer's message comes in (``from``: digits only); delivers ``messages.upsert``.
    With ``"selected_id": str`` instead of ``text``, the customer picks that row or presses
    that button of the newest list or buttons message the instance sent them that has it
    (delivered with ``listResponseMessage`` or ``buttonsResponseMessage``; 404 when none was
    sent to them, 400 when none has that id). Answer: ``id``, the message's id.
``GET /instances/{name}/sent``
    What the client sent from it, oldest first. Answer: ``count``, ``sent``
    (``{path, body, id, at, status}`` each; ``status``: sent, delivered, read or failed).
``POST /instances/{name}/receipts``, body ``{"message_id": str, "status": "sent" |
"delivered" | "read" | "failed"}``
    Send that receipt of a message it sent, as ``messages.update`` (Evolution API shape:
    ``{keyId, key: {id, remoteJid, fromMe}, remoteJid, fromMe, status: SERVER_ACK |
    DELIVERY_ACK | READ | ERROR}``), even out of order (the message's own status moves forward
    only). 404 when it sent no such message. Answer: ``status``, the message's status now.
``POST /instances/{name}/read``, body ``{"number": "628..."}``
    The customer opens the chat: each message sent to them not read yet is read, and its
    receipt sent. Answer: ``count``, ``ids`` (those read).
``GET /receipts``, ``POST /receipts`` with ``{"delay": seconds or null}``
    After each send, its ``delivered`` receipt goes out ``delay`` seconds later (0.2 by
    default); null sends none by itself. Answer: ``delay``.
``GET /instances/{name}/received``
    What customers sent to it, oldest first. Answer: ``count``, ``received``
    (``{id, from, push_name, text, selected_id, at}`` each; ``push_name`` null when none was
    given, ``selected_id`` null unless a row or button was chosen).
``GET /deliveries``
    The webhook delivery log (every webhook that wants an event gets it). Answer: ``count``,
    ``deliveries`` (``{webhook_id, url, event, instance, status, error, at}`` each;
    ``status`` is null when ``error`` says why).
``GET /limits``
    Answer: ``limits`` (**).
``POST /limits``, body with any of ``per_minute`` (int or null), ``retry_after`` (seconds or
null), ``strict`` (bool), ``burst`` (int), ``window`` (seconds)
    Change the pacing rules; absent keys keep their value. Answer: ``limits`` (**).
``GET /events``, ``GET /phone/``
    The dev phone page's live event stream and the page itself (the server root ``/``
    redirects there): see :mod:`wachat_async.testing._devphone`.

(*) An instance's view: ``api_name``, ``display_name``, ``integration``, ``state``
(``connecting``, ``open``, ``close``), ``number``, ``profile_name``, ``qrcode`` (``{code,
base64 (a data: URI), count}`` while it waits for a scan, else null), ``sent_count``,
``received_count``, ``created_at``, ``updated_at``.

(**) ``{per_minute, retry_after, strict, burst, window}``; see
:mod:`wachat_async.testing._pacing`. Times (``at``) are wall-clock Unix seconds.

**Authorization.** When the server is bound to a loopback host (the default ``127.0.0.1``),
control is open to anyone who can reach it, which is only this machine. Bound elsewhere
(``0.0.0.0``, a LAN address), every control request needs ``Authorization: Bearer <one of
the server's API keys>`` (401 otherwise), the event stream included; only the dev phone
page's own files (which hold no data) are served without it. Wherever it is bound, a request
with a foreign ``Host`` (421) or from another site's page (403) is refused first: see
:class:`~wachat_async.testing._web.SiteGuard`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from aiohttp import web

from .._security import is_loopback_host
from ._deliveries import Deliverer
from ._devphone import PUBLIC_ROUTES, DevPhone
from ._faults import Handler
from ._pacing import Pacing
from ._state import FakeInstance, Sandbox
from ._validation import optional, require_digits, require_str
from ._web import Refused, bearer_key, error_response, json_object, refusal_response

CONTROL_PREFIX = "/_sandbox"

_LIMIT_FIELDS = frozenset({"per_minute", "retry_after", "strict", "burst", "window"})


def control_allowed(bound_host: str, key: str | None, api_keys: Collection[str]) -> bool:
    """Whether a control request carrying bearer ``key`` (or None) may act on a server bound to
    ``bound_host``: always on loopback, else only with one of ``api_keys``."""
    return is_loopback_host(bound_host) or (key is not None and key in api_keys)


class Control:
    """The control application (mounted at :data:`CONTROL_PREFIX`). See the module docstring."""

    def __init__(
        self,
        sandbox: Sandbox,
        deliverer: Deliverer,
        *,
        host: str,
        api_keys: Callable[[], Collection[str]],
    ) -> None:
        self._sandbox = sandbox
        self._deliverer = deliverer
        self._host = host
        self._api_keys = api_keys

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/instances", self._list)
        r.add_get("/instances/{name}", self._show)
        r.add_post("/instances/{name}/scan", self._scan)
        r.add_post("/instances/{name}/disconnect", self._disconnect)
        r.add_post("/instances/{name}/rotate-qr", self._rotate_qr)
        r.add_post("/instances/{name}/messages", self._receive_message)
        r.add_get("/instances/{name}/sent", self._sent)
        r.add_get("/instances/{name}/received", self._received)
        r.add_post("/instances/{name}/receipts", self._receipt)
        r.add_post("/instances/{name}/read", self._read)
        r.add_get("/receipts", self._receipts)
        r.add_post("/receipts", self._set_receipts)
        r.add_get("/deliveries", self._deliveries)
        r.add_get("/limits", self._limits)
        r.add_post("/limits", self._set_limits)
        DevPhone(self._sandbox, self._deliverer).add_routes(r)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        public = request.match_info.route.name in PUBLIC_ROUTES
        if not public and not control_allowed(self._host, bearer_key(request), self._api_keys()):
            return error_response(
                401, "Sandbox control on a non-loopback address needs Authorization: Bearer <key>"
            )
        try:
            return await handler(request)
        except Refused as refusal:
            return refusal_response(refusal)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_response(
                exc.status, f"{exc.reason}: no sandbox control {request.method} {request.path}"
            )

    def _instance(self, request: web.Request) -> FakeInstance:
        name = request.match_info["name"]
        try:
            return self._sandbox.find(name)
        except KeyError:
            raise Refused(f"No single instance named {name!r}", status=404) from None

    def _answer(self, inst: FakeInstance) -> web.Response:
        return web.json_response({"success": True, "instance": self._sandbox.view(inst)})

    async def _list(self, request: web.Request) -> web.Response:
        views = [self._sandbox.view(inst) for inst in list(self._sandbox.instances.values())]
        return web.json_response({"success": True, "count": len(views), "instances": views})

    async def _show(self, request: web.Request) -> web.Response:
        return self._answer(self._instance(request))

    async def _scan(self, request: web.Request) -> web.Response:
        inst = self._instance(request)
        body = await json_object(request, required=False)
        optional(body, "profile_name", str, "a string")
        self._sandbox.scan(inst, profile_name=body.get("profile_name"))
        return self._answer(inst)

    async def _disconnect(self, request: web.Request) -> web.Response:
        inst = self._instance(request)
        self._sandbox.disconnect(inst)
        return self._answer(inst)

    async def _rotate_qr(self, request: web.Request) -> web.Response:
        inst = self._instance(request)
        self._sandbox.rotate_qr(inst)
        return self._answer(inst)

    async def _receive_message(self, request: web.Request) -> web.Response:
        inst = self._instance(request)
        body = await json_object(request)
        sender = require_digits(body, "from")
        optional(body, "push_name", str, "a string")
        if "selected_id" in body:
            if "text" in body:
                raise Refused("Give either text or selected_id, not both")
            message_id = self._sandbox.receive_choice(
                inst, sender, require_str(body, "selected_id"), push_name=body.get("push_name")
            )
        else:
            message_id = self._sandbox.receive_message(
                inst, sender, require_str(body, "text"), push_name=body.get("push_name")
            )
        return web.json_response({"success": True, "id": message_id})

    async def _sent(self, request: web.Request) -> web.Response:
        sent = list(self._instance(request).sent)
        return web.json_response({"success": True, "count": len(sent), "sent": sent})

    async def _received(self, request: web.Request) -> web.Response:
        received = list(self._instance(request).received)
        return web.json_response({"success": True, "count": len(received), "received": received})

    async def _receipt(self, request: web.Request) -> web.Response:
        inst = self._instance(request)
        body = await json_object(request)
        status = self._sandbox.receipt(
            inst, require_str(body, "message_id"), require_str(body, "status")
        )
        return web.json_response({"success": True, "status": status})

    async def _read(self, request: web.Request) -> web.Response:
        inst = self._instance(request)
        body = await json_object(request)
        ids = self._sandbox.read_chat(inst, require_digits(body, "number"))
        return web.json_response({"success": True, "count": len(ids), "ids": ids})

    async def _receipts(self, request: web.Request) -> web.Response:
        return web.json_response({"success": True, "delay": self._sandbox.receipt_delay})

    async def _set_receipts(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        unknown = set(body) - {"delay"}
        if unknown or "delay" not in body:
            raise Refused('Give {"delay": seconds or null}')
        delay = body["delay"]
        valid = delay is None or (
            isinstance(delay, int | float) and not isinstance(delay, bool) and 0 <= delay < 3600
        )
        if not valid:
            raise Refused("delay must be a number of seconds from 0 to 3600, or null")
        self._sandbox.receipt_delay = None if delay is None else float(delay)
        return await self._receipts(request)

    async def _deliveries(self, request: web.Request) -> web.Response:
        log = [d.as_json() for d in self._deliverer.log]
        return web.json_response({"success": True, "count": len(log), "deliveries": log})

    async def _limits(self, request: web.Request) -> web.Response:
        return web.json_response({"success": True, "limits": self._sandbox.pacing.as_json()})

    async def _set_limits(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        unknown = set(body) - _LIMIT_FIELDS
        if unknown:
            raise Refused(f"Unknown field(s): {', '.join(sorted(unknown))}")
        try:
            pacing = Pacing(**(self._sandbox.pacing.as_json() | body))
        except ValueError as exc:
            raise Refused(str(exc)) from None
        self._sandbox.pacing = pacing
        return await self._limits(request)
