"""FakeWachat: an in-memory Wachat Enterprise API on loopback, faithful to the published spec.

It is the embedded sandbox of the ``wachat`` command and the server of this library's tests;
use it in yours. It answers every known operation, validates request bodies as the spec
describes them (400 with an ``error`` message), enforces the bearer key (401), keeps a state
machine per instance (``connecting`` with a rotating QR, ``open`` after :meth:`scan`,
``close`` after :meth:`logout`), records what it received, delivers signed webhooks, and
misbehaves on request (:meth:`inject`, :meth:`chaos`).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import io
import itertools
import json
import logging
import secrets
import string
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, Self, TypeVar
from urllib.parse import urlsplit

import aiohttp
import attrs
from aiohttp import web

from .._security import is_loopback_host
from ..webhooks import sign
from ._faults import Fault, FaultKind, FaultPlan

T = TypeVar("T")

logger = logging.getLogger("wachat_async.testing")

API_PREFIX = "/api/v1"
INTEGRATIONS = ("WHATSAPP-BAILEYS", "WHATSAPP-BUSINESS")
WEBHOOK_EVENTS = (
    "*",
    "messages.upsert",
    "messages.update",
    "contacts.update",
    "chats.update",
    "qrcode.updated",
    "connection.update",
)
MEDIA_TYPES = ("image", "video", "document", "audio")

# A 1x1 baseline JPEG: the profile picture of every connected fake instance.
PROFILE_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEAYABgAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwc"
    "KDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCAABAAEBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QA"
    "tRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0"
    "NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2"
    "t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/APn+iiigD//Z"
)

_BOOL_FIELDS = ("rejectCalls", "ignoreGroups", "alwaysOnline", "readMessages", "readStatus")
_META_FIELDS = ("metaToken", "metaBusinessId", "metaPhoneNumberId")
_CREATE_FIELDS = frozenset({"instanceName", "number", "integration", *_BOOL_FIELDS, *_META_FIELDS})


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _token(n: int) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def render_qr_png(payload: str) -> bytes:
    """A real, scannable QR code PNG for ``payload`` (needs segno: the ``testing`` extra)."""
    try:
        import segno
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "FakeWachat renders real QR codes with segno: pip install 'wachat-async[testing]'"
        ) from None
    out = io.BytesIO()
    segno.make_qr(payload, error="l").save(out, kind="png", scale=4, border=4)
    return out.getvalue()


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@attrs.define
class FakeInstance:
    """One instance held by the fake server."""

    id: int
    display_name: str
    api_name: str
    integration: str
    number: str | None
    options: dict[str, Any]
    state: str = "connecting"
    qr_code: str | None = None
    qr_png: bytes | None = attrs.field(default=None, repr=False)
    qr_count: int = 0
    qr_issued_at: float = 0.0
    created_at: str = attrs.field(factory=_now_iso)
    updated_at: str = attrs.field(factory=_now_iso)
    #: Messages sent from this instance: ``{"path", "body", "id", "at"}`` each.
    sent: list[dict[str, Any]] = attrs.field(factory=list, repr=False)

    @property
    def owner(self) -> str | None:
        return f"{self.number}@s.whatsapp.net" if self.number and self.state == "open" else None


@attrs.define
class FakeWebhook:
    id: int
    url: str
    name: str | None
    events: list[str]
    enabled: bool
    secret: str = attrs.field(repr=False)
    instance_name: str | None
    created_at: str = attrs.field(factory=_now_iso)
    updated_at: str = attrs.field(factory=_now_iso)


@attrs.frozen
class RecordedRequest:
    """A request the fake received (the ``Authorization`` header is not kept)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    content_type: str


@attrs.frozen
class Exchange:
    """A request and the answer the fake gave, for contract checks."""

    request: RecordedRequest
    status: int
    content_type: str
    body: Any  # decoded JSON, or None for binary/HTML bodies
    fault: FaultKind | None


@attrs.frozen
class Delivery:
    """A webhook delivery attempt: where, what, and how the receiver answered."""

    webhook_id: int
    event: str
    instance: str | None
    status: int | None
    error: str | None


class FakeWachat:
    """The fake Wachat server. Start it in a running loop::

        async with FakeWachat(api_keys={"test-key"}) as server:
            async with AsyncWachat("test-key", base_url=server.base_url) as wa:
                ...

    or in a thread of its own (for sync code): ``with FakeWachat.in_thread() as server``.

    ``qr_ttl`` is how long a QR code lives before it rotates. ``qr_pool`` pre-renders that
    many QR codes and reuses them (rendering one costs a few milliseconds, which would dominate
    a benchmark); by default every code is unique. ``instance_limit`` makes creates beyond it
    fail with 403, as a subscription limit does.
    """

    def __init__(
        self,
        api_keys: Iterable[str] = ("test-key",),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        qr_ttl: float = 40.0,
        qr_pool: int | None = None,
        instance_limit: int | None = None,
        record: bool = True,
    ) -> None:
        self.api_keys = set(api_keys)
        if not self.api_keys:
            raise ValueError("FakeWachat needs at least one API key")
        self.host = host
        self.port = port
        self.qr_ttl = qr_ttl
        self.instance_limit = instance_limit
        self.record = record
        #: Instances by API name.
        self.instances: dict[str, FakeInstance] = {}
        self.webhooks: dict[int, FakeWebhook] = {}
        self.requests: list[RecordedRequest] = []
        self.exchanges: list[Exchange] = []
        self.deliveries: list[Delivery] = []
        #: What the server really did: ``created``, ``deleted``, ``sent``, ``faults.<kind>``, ...
        self.stats: Counter[str] = Counter()
        self.faults = FaultPlan()
        self._qr_pool: list[tuple[str, bytes]] | None = None
        self._qr_pool_size = qr_pool
        self._pool_cursor = itertools.count()
        self._ids = itertools.count(1)
        self._webhook_ids = itertools.count(1)
        self._qr_failures = 0
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._delivery_session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._rotator: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/api/v1``: what a client's ``base_url`` should be."""
        if self._runner is None:
            raise RuntimeError("FakeWachat is not started")
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self._runner else "not started"
        return f"FakeWachat({where}, instances={len(self.instances)})"

    async def start(self) -> Self:
        self._loop = asyncio.get_running_loop()
        if self._qr_pool_size and self._qr_pool is None:
            self._qr_pool = [self._render_new_qr() for _ in range(self._qr_pool_size)]
        app = web.Application(middlewares=[self._middleware], client_max_size=4 * 1024 * 1024)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = _bound_port(site)
        self._rotator = asyncio.create_task(self._rotate_expired_forever())
        return self

    async def close(self) -> None:
        if self._rotator is not None:
            self._rotator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rotator
        await self.flush_deliveries()
        if self._delivery_session is not None:
            await self._delivery_session.close()
            self._delivery_session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, *args: Any, **kwargs: Any) -> Iterator[FakeWachat]:
        """Run a FakeWachat on its own event loop in a daemon thread (for sync code and CLIs).

        The control methods (:meth:`scan`, :meth:`inject`, ...) may be called from any thread.
        """
        server = cls(*args, **kwargs)
        loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(server.start())
            except BaseException as exc:
                ready.set_exception(exc)
                return
            ready.set_result(None)
            loop.run_forever()
            loop.run_until_complete(server.close())
            loop.close()

        thread = threading.Thread(target=serve, name="FakeWachat", daemon=True)
        thread.start()
        ready.result(timeout=30)
        try:
            yield server
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop (now if we are on it) and return its result."""
        loop = self._loop
        if loop is None or not loop.is_running() or _running_loop() is loop:
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=30)

    # -- control: faults -----------------------------------------------------------------------

    def inject(
        self,
        fault: Fault,
        *,
        path: str | None = None,
        method: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Make the next ``times`` requests to ``path`` (``/instance/create``; None: any path)
        misbehave as ``fault``. ``times=None`` keeps it forever (until :meth:`clear_faults`)."""
        self._call(lambda: self.faults.add(fault, path=path, method=method, times=times))

    def chaos(
        self,
        rate: float,
        faults: Sequence[Fault],
        *,
        seed: int = 0,
        path: str | None = None,
        method: str | None = None,
    ) -> None:
        """Make each matching request misbehave with probability ``rate``, as a random one of
        ``faults`` (seeded, so a run can be repeated)."""
        self._call(lambda: self.faults.chaos(rate, faults, seed=seed, path=path, method=method))

    def clear_faults(self) -> None:
        self._call(self.faults.clear)

    def fail_qr(self, times: int = 1) -> None:
        """The next ``times`` creates succeed but cannot fetch their QR (``qrcode: null``)."""

        def set_failures() -> None:
            self._qr_failures += times

        self._call(set_failures)

    # -- control: the phone side -------------------------------------------------------------

    def instance(self, name: str) -> FakeInstance:
        """An instance by API name (or, when unambiguous, by friendly name)."""
        if name in self.instances:
            return self.instances[name]
        matches = [i for i in self.instances.values() if i.display_name == name]
        if len(matches) == 1:
            return matches[0]
        raise KeyError(f"no single fake instance named {name!r}")

    def count_instances(self, display_name: str) -> int:
        """How many instances carry the friendly name ``display_name``."""
        return sum(1 for i in list(self.instances.values()) if i.display_name == display_name)

    def scan(self, name: str, *, profile_name: str | None = None) -> None:
        """Simulate the phone scanning the QR: the instance becomes ``open``."""

        def do() -> None:
            inst = self.instance(name)
            inst.state = "open"
            inst.number = inst.number or "628" + "".join(
                secrets.choice(string.digits) for _ in range(9)
            )
            inst.options["profileName"] = profile_name or inst.display_name
            inst.updated_at = _now_iso()
            self._emit(
                "connection.update",
                inst,
                {"instance": inst.api_name, "state": "open", "statusReason": 200},
            )

        self._call(do)

    def logout(self, name: str) -> None:
        """Simulate logging out (or the phone unlinking): the instance becomes ``close``."""
        self._call(lambda: self._logout(self.instance(name)))

    def rotate_qr(self, name: str) -> None:
        """Issue a new QR code now (as expiry would)."""
        self._call(lambda: self._rotate(self.instance(name)))

    def receive_message(
        self, name: str, from_number: str, text: str, *, push_name: str | None = None
    ) -> str:
        """Simulate an incoming WhatsApp message; delivers ``messages.upsert``. Returns its id."""
        message_id = "3EB0" + _token(16).upper()

        def do() -> None:
            inst = self.instance(name)
            self._emit(
                "messages.upsert",
                inst,
                {
                    "key": {
                        "remoteJid": f"{from_number}@s.whatsapp.net",
                        "fromMe": False,
                        "id": message_id,
                    },
                    "pushName": push_name or from_number,
                    "message": {"conversation": text},
                    "messageType": "conversation",
                    "messageTimestamp": int(time.time()),
                },
            )

        self._call(do)
        return message_id

    def sent_messages(self, name: str) -> list[dict[str, Any]]:
        """What was sent from an instance, oldest first."""
        return list(self.instance(name).sent)

    async def flush_deliveries(self) -> None:
        """Wait until every webhook delivery started so far has finished."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- QR codes ----------------------------------------------------------------------------

    def _render_new_qr(self) -> tuple[str, bytes]:
        code = f"2@{_token(32)},{_token(24)},{_token(12)}"
        return code, render_qr_png(code)

    def _next_qr(self) -> tuple[str, bytes]:
        if self._qr_pool:
            return self._qr_pool[next(self._pool_cursor) % len(self._qr_pool)]
        return self._render_new_qr()

    def _rotate(self, inst: FakeInstance, *, notify: bool = True) -> None:
        inst.qr_code, inst.qr_png = self._next_qr()
        inst.qr_count += 1
        inst.qr_issued_at = time.monotonic()
        if notify:
            self._emit("qrcode.updated", inst, {"qrcode": self._qr_json(inst, for_webhook=True)})

    def _refresh_if_expired(self, inst: FakeInstance) -> None:
        if (
            inst.state != "open"
            and inst.integration == "WHATSAPP-BAILEYS"
            and (inst.qr_code is None or time.monotonic() - inst.qr_issued_at >= self.qr_ttl)
        ):
            self._rotate(inst)

    async def _rotate_expired_forever(self) -> None:
        if self.qr_ttl == float("inf"):
            return  # QR codes never expire (benchmarks): nothing to watch
        while True:
            await asyncio.sleep(min(1.0, self.qr_ttl / 2))
            for inst in list(self.instances.values()):
                self._refresh_if_expired(inst)

    def _qr_json(self, inst: FakeInstance, *, for_webhook: bool = False) -> dict[str, Any]:
        assert inst.qr_png is not None
        data = {
            "pairingCode": "".join(secrets.choice(string.ascii_uppercase) for _ in range(8)),
            "code": inst.qr_code,
            "base64": "data:image/png;base64," + base64.b64encode(inst.qr_png).decode(),
            "count": inst.qr_count,
        }
        if for_webhook:
            return {"instance": inst.api_name, **data}
        base = self.base_url if self._runner else ""
        return {
            **data,
            "imageUrl": f"{base}/instance/qr/image?instanceName={inst.api_name}",
            "liveUrl": f"{base}/instance/qr/live?instanceName={inst.api_name}",
        }

    # -- HTTP plumbing -----------------------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        r = app.router
        p = API_PREFIX
        r.add_post(f"{p}/instance/create", self._create)
        r.add_get(f"{p}/instance/list", self._list)
        r.add_get(f"{p}/instance/state", self._state)
        r.add_get(f"{p}/instance/qr", self._qr)
        r.add_get(f"{p}/instance/qr/image", self._qr_image)
        r.add_get(f"{p}/instance/qr/live", self._qr_live)
        r.add_get(f"{p}/instance/profile-picture", self._profile_picture)
        r.add_delete(f"{p}/instance/delete", self._delete)
        # The real logout path is unpublished; this one exists on the fake only.
        r.add_delete(f"{p}/instance/logout", self._logout_route)
        r.add_post(f"{p}/send/text", self._send_handler(_check_text))
        r.add_post(f"{p}/send/media", self._send_handler(_check_media))
        r.add_post(f"{p}/send", self._send_handler(_check_generic))
        r.add_post(f"{p}/send-location", self._send_handler(_check_location))
        r.add_post(f"{p}/send/list", self._send_handler(_check_list))
        r.add_post(f"{p}/send/button", self._send_handler(_check_button))
        r.add_get(f"{p}/webhooks", self._list_webhooks)
        r.add_post(f"{p}/webhooks", self._upsert_webhook)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        path = request.path.removeprefix(API_PREFIX)
        self.stats[f"requests {request.method} {path}"] += 1
        recorded = await self._record(request, path)
        fault = self.faults.take(request.method, path)
        if fault is not None:
            self.stats[f"faults.{fault.kind.value}"] += 1
        response = await self._serve(request, handler, fault)
        if recorded is not None and isinstance(response, web.Response):
            self._record_answer(recorded, response, fault)
        return response

    async def _serve(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        fault: Fault | None,
    ) -> web.StreamResponse:
        if fault is None:
            return await self._handle(request, handler)
        kind = fault.kind
        if kind is FaultKind.STATUS:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            if fault.retry_after_ms is not None:
                headers["retry-after-ms"] = str(fault.retry_after_ms)
            return _error(
                fault.status_code, fault.message or f"Injected {fault.status_code}", headers=headers
            )
        if kind is FaultKind.DROP_BEFORE:
            _drop(request)
        if kind is FaultKind.DELAY:
            await asyncio.sleep(fault.delay)
        response = await self._handle(request, handler)
        if kind is FaultKind.DELAY or not isinstance(response, web.Response):
            return response
        body = response.body if isinstance(response.body, bytes) else b""
        if kind is FaultKind.DROP_AFTER:
            _drop(request)
        if kind is FaultKind.MALFORMED:
            return web.Response(
                status=response.status,
                body=b'{"success": true, "instance": {"id',
                content_type="application/json",
            )
        if kind is FaultKind.WRONG_CONTENT_TYPE:
            return web.Response(
                status=response.status,
                text="<html><body>Bad gateway page</body></html>",
                content_type="text/html",
            )
        # TRUNCATED: promise the whole body, send half, hang up.
        stream = web.StreamResponse(
            status=response.status, headers={"Content-Type": response.content_type}
        )
        stream.content_length = len(body)
        await stream.prepare(request)
        await stream.write(body[: len(body) // 2])
        return _drop(request)

    async def _handle(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, "Invalid or missing API key")
        try:
            return await handler(request)
        except _BadRequest as exc:
            return _error(exc.status, str(exc))

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() == "bearer" and key.strip() in self.api_keys:
            return True
        # apiKey in the query is documented for the <img>/<iframe> endpoints only.
        return (
            request.path.startswith(
                (f"{API_PREFIX}/instance/qr", f"{API_PREFIX}/instance/profile-picture")
            )
            and request.query.get("apiKey") in self.api_keys
        )

    async def _record(self, request: web.Request, path: str) -> RecordedRequest | None:
        if not self.record:
            return None
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
        query = {k: v for k, v in request.query.items() if k != "apiKey"}
        recorded = RecordedRequest(request.method, path, query, body, request.content_type)
        self.requests.append(recorded)
        return recorded

    def _record_answer(
        self, request: RecordedRequest, response: web.Response, fault: Fault | None
    ) -> None:
        body: Any = None
        if response.content_type == "application/json" and isinstance(response.body, bytes):
            with contextlib.suppress(ValueError):
                body = json.loads(response.body)
        self.exchanges.append(
            Exchange(
                request, response.status, response.content_type, body, fault.kind if fault else None
            )
        )

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise _BadRequest("Content-Type must be application/json")
        try:
            data = json.loads(await request.read())
        except ValueError:
            raise _BadRequest("Request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise _BadRequest("Request body must be a JSON object")
        return data

    def _find(self, request: web.Request) -> FakeInstance:
        name = request.query.get("instanceName")
        if not name:
            raise _BadRequest("instanceName is required")
        inst = self.instances.get(name)
        if inst is None:
            raise _BadRequest(f"Instance {name} not found", status=404)
        return inst

    # -- instance handlers -------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        _check_create(body)
        if self.instance_limit is not None and len(self.instances) >= self.instance_limit:
            raise _BadRequest(
                f"Instance limit reached for your subscription ({self.instance_limit})", status=403
            )
        friendly = body["instanceName"]
        integration = body.get("integration", "WHATSAPP-BAILEYS")
        inst = FakeInstance(
            id=next(self._ids),
            display_name=friendly,
            api_name=f"t1_{_token(8)}_{friendly}",
            integration=integration,
            number=body.get("number"),
            options={k: body[k] for k in _BOOL_FIELDS if k in body},
            state="open" if integration == "WHATSAPP-BUSINESS" else "connecting",
        )
        self.instances[inst.api_name] = inst
        self.stats["created"] += 1
        qrcode: dict[str, Any] | None = None
        qr_error: str | None = None
        if integration == "WHATSAPP-BAILEYS":
            self._rotate(inst, notify=False)
            if self._qr_failures:
                self._qr_failures -= 1
                qr_error = "QR code could not be fetched from the WhatsApp session yet"
            else:
                qrcode = self._qr_json(inst)
        if request.query.get("response") == "image":
            if inst.qr_png is None or qr_error:
                return _error(502, qr_error or "This integration has no QR code")
            return web.Response(
                status=201,
                body=inst.qr_png,
                content_type="image/png",
                headers={
                    "X-Instance-Name": inst.display_name,
                    "X-Api-Instance-Name": inst.api_name,
                },
            )
        return web.json_response(
            {
                "success": True,
                "instance": self._instance_json(inst),
                "qrcode": qrcode,
                "qrError": qr_error,
            },
            status=201,
        )

    def _instance_json(self, inst: FakeInstance) -> dict[str, Any]:
        return {
            "id": inst.id,
            "instanceName": inst.display_name,
            "displayName": inst.display_name,
            "apiInstanceName": inst.api_name,
            "internalName": inst.api_name,
            "number": inst.number or "",
            "integration": inst.integration,
        }

    def _profile(self, inst: FakeInstance) -> dict[str, Any]:
        picture = (
            f"{self.base_url}/instance/profile-picture?instanceName={inst.api_name}"
            if inst.state == "open"
            else None
        )
        return {
            "profileName": inst.options.get("profileName") if inst.state == "open" else None,
            "profilePictureUrl": picture,
            "profilePicUrl": picture,
            "number": inst.number or "",
            "owner": inst.owner,
            "integration": inst.integration,
        }

    async def _list(self, request: web.Request) -> web.Response:
        items = []
        for inst in list(self.instances.values()):
            self._refresh_if_expired(inst)
            profile = self._profile(inst)
            items.append(
                {
                    "id": inst.id,
                    "instanceName": inst.display_name,
                    "displayName": inst.display_name,
                    "apiInstanceName": inst.api_name,
                    "internalName": inst.api_name,
                    "state": inst.state,
                    "status": inst.state,
                    "isConnected": inst.state == "open",
                    **profile,
                    "profileName": profile["profileName"] or inst.display_name,
                    "owner": profile["owner"] or "",
                    "createdAt": inst.created_at,
                    "updatedAt": inst.updated_at,
                }
            )
        return web.json_response({"success": True, "count": len(items), "instances": items})

    async def _state(self, request: web.Request) -> web.Response:
        inst = self._find(request)
        self._refresh_if_expired(inst)
        profile = self._profile(inst)
        return web.json_response(
            {
                "success": True,
                "data": {"instance": {"instanceName": inst.api_name, "state": inst.state}},
                "instance": {
                    "instanceName": inst.display_name,
                    "apiInstanceName": inst.api_name,
                    "internalName": inst.api_name,
                    "state": inst.state,
                    **profile,
                    "profileName": profile["profileName"] or inst.display_name,
                    "owner": profile["owner"] or "",
                },
            }
        )

    def _qr_or_conflict(self, inst: FakeInstance) -> None:
        if inst.integration != "WHATSAPP-BAILEYS":
            raise _BadRequest("This integration has no QR code")
        if inst.state == "open":
            raise _BadRequest(f"Instance {inst.api_name} is already connected", status=409)
        self._refresh_if_expired(inst)

    async def _qr(self, request: web.Request) -> web.Response:
        inst = self._find(request)
        self._qr_or_conflict(inst)
        return web.json_response({"success": True, "qrcode": self._qr_json(inst)})

    async def _qr_image(self, request: web.Request) -> web.Response:
        inst = self._find(request)
        self._qr_or_conflict(inst)
        return web.Response(body=inst.qr_png, content_type="image/png")

    async def _qr_live(self, request: web.Request) -> web.Response:
        inst = self._find(request)
        if inst.state == "open":
            content = "<h2>WhatsApp connected &#10003;</h2>"
        else:
            self._qr_or_conflict(inst)
            content = (
                f'<img src="{self._qr_json(inst)["base64"]}" width="264" height="264" alt="QR">'
            )
        page = (
            f'<!doctype html><html><head><meta http-equiv="refresh" content="5"><title>'
            f"{inst.display_name}</title></head><body>{content}</body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    async def _profile_picture(self, request: web.Request) -> web.Response:
        inst = self._find(request)
        if inst.state != "open":
            raise _BadRequest("Instance is not connected: no profile picture", status=404)
        return web.Response(body=PROFILE_JPEG, content_type="image/jpeg")

    async def _delete(self, request: web.Request) -> web.Response:
        inst = self._find(request)
        if inst.state == "open":
            raise _BadRequest("Instance is still connected. Logout first.", status=409)
        del self.instances[inst.api_name]
        self.stats["deleted"] += 1
        return web.json_response({"success": True, "message": f"Instance {inst.api_name} deleted"})

    async def _logout_route(self, request: web.Request) -> web.Response:
        inst = self._find(request)
        self._logout(inst)
        return web.json_response({"success": True, "message": "Logged out"})

    def _logout(self, inst: FakeInstance) -> None:
        inst.state = "close"
        inst.updated_at = _now_iso()
        self._emit(
            "connection.update",
            inst,
            {"instance": inst.api_name, "state": "close", "statusReason": 401},
        )

    # -- messages ------------------------------------------------------------------------------

    def _send_handler(
        self, check: Callable[[dict[str, Any]], None]
    ) -> Callable[[web.Request], Coroutine[Any, Any, web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            body = await self._json_body(request)
            for field in ("instanceName", "number"):
                _require_str(body, field)
            if not body["number"].isdigit():
                raise _BadRequest("number must contain digits only, with the country code")
            if "delay" in body and (not _is_int(body["delay"]) or body["delay"] < 0):
                raise _BadRequest("delay must be a non-negative integer (milliseconds)")
            check(body)
            inst = self.instances.get(body["instanceName"])
            if inst is None:
                raise _BadRequest(f"Instance {body['instanceName']} not found", status=404)
            if inst.state != "open":
                raise _BadRequest(
                    f"Instance {inst.api_name} is not connected (state: {inst.state}); "
                    "scan its QR code first"
                )
            message_id = "3EB0" + _token(16).upper()
            inst.sent.append(
                {
                    "path": request.path.removeprefix(API_PREFIX),
                    "body": body,
                    "id": message_id,
                    "at": time.time(),
                }
            )
            self.stats["sent"] += 1
            return web.json_response(
                {
                    "success": True,
                    "message": "Message queued for dispatch",
                    "data": {"id": message_id, "status": "PENDING"},
                }
            )

        return handle

    # -- webhooks ------------------------------------------------------------------------------

    def _webhook_json(self, hook: FakeWebhook, *, reveal: bool) -> dict[str, Any]:
        inst = self.instances.get(hook.instance_name) if hook.instance_name else None
        return {
            "id": hook.id,
            "name": hook.name,
            "url": hook.url,
            "events": hook.events,
            "enabled": hook.enabled,
            "secret": hook.secret if reveal else f"whsec_••••{hook.secret[-6:]}",
            "instance": None
            if inst is None
            else {
                "instanceName": inst.display_name,
                "displayName": inst.display_name,
                "apiInstanceName": inst.api_name,
                "internalName": inst.api_name,
            },
            "createdAt": hook.created_at,
            "updatedAt": hook.updated_at,
        }

    async def _list_webhooks(self, request: web.Request) -> web.Response:
        name = request.query.get("instanceName")
        hooks = [
            self._webhook_json(h, reveal=False)
            for h in self.webhooks.values()
            if name is None or h.instance_name == name
        ]
        return web.json_response({"success": True, "count": len(hooks), "webhooks": hooks})

    async def _upsert_webhook(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        _check_webhook(body)
        if "instanceName" in body and body["instanceName"] not in self.instances:
            raise _BadRequest(f"Instance {body['instanceName']} not found", status=404)
        if "id" in body:
            hook = self.webhooks.get(body["id"])
            if hook is None:
                raise _BadRequest(f"Webhook {body['id']} not found", status=404)
            hook.url = body["url"]
            for key, attr in (
                ("name", "name"),
                ("events", "events"),
                ("enabled", "enabled"),
                ("secret", "secret"),
                ("instanceName", "instance_name"),
            ):
                if key in body:
                    setattr(hook, attr, body[key])
            hook.updated_at = _now_iso()
        else:
            hook = FakeWebhook(
                id=next(self._webhook_ids),
                url=body["url"],
                name=body.get("name"),
                events=body.get("events", ["*"]),
                enabled=body.get("enabled", True),
                secret=body.get("secret") or "whsec_" + _token(32),
                instance_name=body.get("instanceName"),
            )
            self.webhooks[hook.id] = hook
            self.stats["webhooks_created"] += 1
        return web.json_response(
            {"success": True, "webhook": self._webhook_json(hook, reveal=True)}
        )

    def _emit(self, event: str, inst: FakeInstance, data: Any) -> None:
        """Deliver ``event`` to every enabled webhook that wants it, signed, in the background."""
        for hook in list(self.webhooks.values()):
            if not hook.enabled or (hook.instance_name not in (None, inst.api_name)):
                continue
            if "*" not in hook.events and event not in hook.events:
                continue
            task = asyncio.get_running_loop().create_task(self._deliver(hook, event, inst, data))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _deliver(self, hook: FakeWebhook, event: str, inst: FakeInstance, data: Any) -> None:
        body = json.dumps(
            {"event": event, "instance": inst.api_name, "data": data, "date_time": _now_iso()}
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Wachat-Event": event,
            "X-Wachat-Timestamp": timestamp,
            "X-Wachat-Signature": "sha256=" + sign(hook.secret, timestamp, body),
            "X-Wachat-Webhook-Id": str(hook.id),
        }
        if self._delivery_session is None:
            self._delivery_session = aiohttp.ClientSession()
        status: int | None = None
        error: str | None = None
        try:
            async with self._delivery_session.post(
                hook.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                status = resp.status
                await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.deliveries.append(Delivery(hook.id, event, inst.api_name, status, error))
        self.stats["deliveries"] += 1


# -- request validation, as the spec describes each body ------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_str(body: dict[str, Any], field: str) -> None:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise _BadRequest(f"{field} is required and must be a non-empty string")


def _optional(body: dict[str, Any], field: str, kind: type, label: str) -> None:
    if field not in body:
        return
    value = body[field]
    ok = (
        isinstance(value, bool)
        if kind is bool
        else isinstance(value, kind) and not isinstance(value, bool)
    )
    if not ok:
        raise _BadRequest(f"{field} must be {label}")


def _check_create(body: dict[str, Any]) -> None:
    unknown = set(body) - _CREATE_FIELDS
    if unknown:
        raise _BadRequest(f"Unknown field(s): {', '.join(sorted(unknown))}")
    _require_str(body, "instanceName")
    _optional(body, "number", str, "a string")
    if "number" in body and not body["number"].isdigit():
        raise _BadRequest("number must contain digits only, with the country code")
    if "integration" in body and body["integration"] not in INTEGRATIONS:
        raise _BadRequest(f"integration must be one of {', '.join(INTEGRATIONS)}")
    for field in _BOOL_FIELDS:
        _optional(body, field, bool, "a boolean")
    for field in _META_FIELDS:
        _optional(body, field, str, "a string")
    if body.get("integration") == "WHATSAPP-BUSINESS":
        missing = [f for f in _META_FIELDS if not body.get(f)]
        if missing:
            raise _BadRequest(f"WHATSAPP-BUSINESS requires {', '.join(missing)}")


def _check_text(body: dict[str, Any]) -> None:
    if body.get("type") != "text":
        raise _BadRequest('type must be "text"')
    _require_str(body, "message")


def _check_media_fields(body: dict[str, Any]) -> None:
    for field in ("message", "fileName", "mimetype"):
        _optional(body, field, str, "a string")


def _check_media(body: dict[str, Any]) -> None:
    if body.get("type") not in MEDIA_TYPES:
        raise _BadRequest(f"type must be one of {', '.join(MEDIA_TYPES)}")
    _require_str(body, "mediaUrl")
    _check_media_fields(body)


def _check_generic(body: dict[str, Any]) -> None:
    if body.get("type") not in ("text", *MEDIA_TYPES):
        raise _BadRequest("type must be text, image, video, document or audio")
    if body["type"] == "text":
        _require_str(body, "message")
    else:
        _require_str(body, "mediaUrl")
    _check_media_fields(body)


def _check_location(body: dict[str, Any]) -> None:
    for field in ("latitude", "longitude"):
        value = body.get(field)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _BadRequest(f"{field} is required and must be a number")
    for field in ("name", "address"):
        _optional(body, field, str, "a string")


def _check_interactive(body: dict[str, Any], kind: str) -> dict[str, Any]:
    if body.get("type") != "interactive":
        raise _BadRequest('type must be "interactive"')
    interactive = body.get("interactive")
    if not isinstance(interactive, dict):
        raise _BadRequest("interactive is required and must be an object")
    if interactive.get("type", kind) != kind:
        raise _BadRequest(f'interactive.type must be "{kind}"')
    return interactive


def _check_list(body: dict[str, Any]) -> None:
    interactive = _check_interactive(body, "list")
    for field in ("title", "text", "buttonText", "footerText"):
        _optional(interactive, field, str, "a string")
    sections = interactive.get("sections")
    if not isinstance(sections, list) or not sections:
        raise _BadRequest("interactive.sections must be a non-empty array")
    for section in sections:
        if not isinstance(section, dict) or not isinstance(section.get("rows"), list):
            raise _BadRequest("each section needs a rows array")
        for row in section["rows"]:
            if not isinstance(row, dict) or not isinstance(row.get("title"), str):
                raise _BadRequest("each row needs a title")


def _check_button(body: dict[str, Any]) -> None:
    interactive = _check_interactive(body, "button")
    buttons = interactive.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise _BadRequest("interactive.buttons must hold one to three buttons")


def _check_webhook(body: dict[str, Any]) -> None:
    _require_str(body, "url")
    parts = urlsplit(body["url"])
    # The real API takes https only; the fake also takes loopback http so tests can receive.
    if not (
        parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))
    ):
        raise _BadRequest("url must be an https URL")
    if "id" in body and not _is_int(body["id"]):
        raise _BadRequest("id must be an integer")
    for field in ("name", "secret", "instanceName"):
        _optional(body, field, str, "a string")
    _optional(body, "enabled", bool, "a boolean")
    if "events" in body:
        events = body["events"]
        if (
            not isinstance(events, list)
            or not events
            or any(e not in WEBHOOK_EVENTS for e in events)
        ):
            raise _BadRequest(f"events must be a non-empty list of {', '.join(WEBHOOK_EVENTS)}")


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"success": False, "error": message}, status=status, headers=headers)


def _drop(request: web.Request) -> NoReturn:
    """Hang up without (another byte of) an answer."""
    transport = request.transport
    if transport is not None:
        transport.close()
    raise asyncio.CancelledError


def _bound_port(site: web.TCPSite) -> int:
    sockets = getattr(site._server, "sockets", None)
    if not sockets:
        raise RuntimeError("FakeWachat did not bind a socket")
    port: int = sockets[0].getsockname()[1]
    return port


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
