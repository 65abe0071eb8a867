"""FakeWachat: an in-memory Wachat Enterprise API on loopback, faithful to the published spec.

It is the embedded sandbox of the ``wachat`` command and the server of this library's tests;
use it in yours. It answers every known operation under ``/api/v1``, validates request bodies
as the spec describes them (400 with an ``error`` message), enforces the bearer key (401),
keeps a state machine per instance (``connecting`` with a rotating QR, ``open`` after
:meth:`~FakeWachat.scan`, ``close`` after :meth:`~FakeWachat.logout`), records what it
received, delivers signed webhooks, plays the gateway's pacing rules, and misbehaves on request
(:meth:`~FakeWachat.inject`, :meth:`~FakeWachat.chaos`). What a phone and a customer do can be
done in process (the methods below) or over HTTP from anywhere (``/_sandbox/...``, see
:mod:`wachat_async.testing._control`): both run the same code. A person does it in a browser:
the dev phone page is at the server's root (:attr:`~FakeWachat.dev_phone_url`).

This module only composes the parts and runs them:

- ``_state``: instances, their state machine, QR codes, webhooks, sends (:class:`Sandbox`);
- ``_pacing``: the rate limit and the anti-spam rule;
- ``_gate``: the API's door (recording, faults, the key); ``_faults``: the faults;
- ``_handlers`` and ``_validation``: the API operations and their input checks;
- ``_deliveries``: signed webhook deliveries;
- ``_changes``: the live feed of what happens in the sandbox;
- ``_control``: the HTTP control endpoints; ``_devphone``: the dev phone page and its stream.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, Self, TypeVar, overload

from aiohttp import web

from ._changes import Changes
from ._control import CONTROL_PREFIX, Control
from ._deliveries import Deliverer, Delivery
from ._faults import Fault, FaultPlan
from ._gate import API_PREFIX, Exchange, Gate, RecordedRequest
from ._handlers import ApiHandlers
from ._pacing import Pacing
from ._state import RECEIPT_DELAY, FakeInstance, FakeWebhook, Sandbox
from ._web import SiteGuard

T = TypeVar("T")

#: The name of the server's one long-lived task (it replaces expired QR codes).
QR_EXPIRY_TASK = "FakeWachat QR expiry"

#: Where the dev phone page is served (see ``_devphone``).
DEV_PHONE_PATH = CONTROL_PREFIX + "/phone/"
#: The dev phone's event stream: a read, yet refused to other sites (each holds a slot).
EVENTS_PATH = CONTROL_PREFIX + "/events"


class _Forward(Generic[T]):
    """A FakeWachat attribute kept on one of its parts, so a change applies at once."""

    def __init__(self, part: str) -> None:
        self._part = part

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...
    @overload
    def __get__(self, obj: FakeWachat, owner: type) -> T: ...
    def __get__(self, obj: FakeWachat | None, owner: type) -> T | Self:
        if obj is None:
            return self
        value: T = getattr(getattr(obj, self._part), self._name)
        return value

    def __set__(self, obj: FakeWachat, value: T) -> None:
        setattr(getattr(obj, self._part), self._name, value)


class FakeWachat:
    """The fake Wachat server. Start it in a running loop::

        async with FakeWachat(api_keys={"test-key"}) as server:
            async with AsyncWachat("test-key", base_url=server.base_url) as wa:
                ...

    or in a thread of its own (for sync code): ``with FakeWachat.in_thread() as server``.

    ``qr_ttl`` is how long a QR code lives before it rotates. ``qr_pool`` pre-renders that
    many QR codes and reuses them (rendering one costs a few milliseconds, which would dominate
    a benchmark); by default every code is unique. ``instance_limit`` makes creates beyond it
    fail with 403, as a subscription limit does. ``record=False`` keeps no :attr:`requests`
    and :attr:`exchanges`.

    ``auto_scan`` connects each new ``WHATSAPP-BAILEYS`` instance that many seconds after its
    creation, as if a phone scanned it (for unattended demos). ``send_rate_limit`` and
    ``strict`` switch on the pacing rules (see :meth:`limit_sends` and :meth:`set_strict`).
    ``receipt_delay`` is how long after a send its ``delivered`` receipt (``messages.update``)
    goes to the webhooks (None: never; send receipts with :meth:`send_receipt` and
    :meth:`read_chat`).

    Only this machine's programs and the server's own pages may drive it: a request whose
    ``Host`` is not the server's address (a loopback name or ``host``, with ``port``) is
    refused (421, against DNS rebinding), and so is a request from another site's page that
    may change something (403). ``allowed_hosts`` adds names it answers for (``sandbox``, as
    other containers reach it). See :class:`~wachat_async.testing._web.SiteGuard`.
    """

    qr_ttl = _Forward[float]("_sandbox")
    instance_limit = _Forward[int | None]("_sandbox")
    auto_scan = _Forward[float | None]("_sandbox")
    receipt_delay = _Forward[float | None]("_sandbox")
    record = _Forward[bool]("_gate")

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
        auto_scan: float | None = None,
        send_rate_limit: int | None = None,
        strict: bool = False,
        allowed_hosts: Iterable[str] = (),
        receipt_delay: float | None = RECEIPT_DELAY,
    ) -> None:
        self.api_keys = set(api_keys)
        if not self.api_keys:
            raise ValueError("FakeWachat needs at least one API key")
        self.host = host
        self.port = port
        #: What the server really did: ``created``, ``deleted``, ``sent``, ``faults.<kind>``,
        #: ``refused.host`` and ``refused.cross_site`` (see :class:`SiteGuard`), ...
        self.stats: Counter[str] = Counter()
        self.faults = FaultPlan()
        self._changes = Changes()
        self._deliverer = Deliverer(self.stats, self._changes)
        self._sandbox = Sandbox(
            stats=self.stats,
            deliver=self._deliverer.deliver,
            qr_ttl=qr_ttl,
            qr_pool=qr_pool,
            instance_limit=instance_limit,
            auto_scan=auto_scan,
            pacing=Pacing(per_minute=send_rate_limit, strict=strict),
            changes=self._changes,
            receipt_delay=receipt_delay,
        )
        self._gate = Gate(
            api_keys=lambda: self.api_keys, faults=self.faults, stats=self.stats, record=record
        )
        self._guard = SiteGuard(
            host,
            lambda: self.port,
            stats=self.stats,
            allowed_hosts=allowed_hosts,
            guarded_reads=lambda path: path == EVENTS_PATH,
        )
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._qr_expiry: asyncio.Task[None] | None = None

    # -- what it holds -------------------------------------------------------------------------

    @property
    def instances(self) -> dict[str, FakeInstance]:
        """Instances by API name."""
        return self._sandbox.instances

    @property
    def webhooks(self) -> dict[int, FakeWebhook]:
        return self._sandbox.webhooks

    @property
    def requests(self) -> list[RecordedRequest]:
        """API requests received, oldest first (control requests are not recorded)."""
        return self._gate.requests

    @property
    def exchanges(self) -> list[Exchange]:
        return self._gate.exchanges

    @property
    def deliveries(self) -> list[Delivery]:
        """Webhook delivery attempts, in the order they finished."""
        return self._deliverer.log

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/api/v1``: what a client's ``base_url`` should be."""
        return self._root_url() + API_PREFIX

    @property
    def control_url(self) -> str:
        """``http://127.0.0.1:<port>/_sandbox``: the root of the control endpoints."""
        return self._root_url() + CONTROL_PREFIX

    @property
    def dev_phone_url(self) -> str:
        """``http://127.0.0.1:<port>/_sandbox/phone/``: the dev phone page, to open in a browser
        (the server root redirects there)."""
        return self._root_url() + DEV_PHONE_PATH

    def _root_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeWachat is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self._runner else "not started"
        return f"FakeWachat({where}, instances={len(self.instances)})"

    async def start(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._sandbox.qr.fill()
        self._deliverer.open()
        self._changes.open()
        api = web.Application(middlewares=[self._gate.middleware])
        ApiHandlers(self._sandbox, lambda: self.base_url).add_routes(api.router)
        control = Control(
            self._sandbox, self._deliverer, host=self.host, api_keys=lambda: self.api_keys
        )
        app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[self._guard.middleware])
        app.on_response_prepare.append(self._guard.add_headers)
        app.add_subapp(API_PREFIX, api)
        app.add_subapp(CONTROL_PREFIX, control.app())
        app.router.add_get("/", _to_dev_phone)
        # Close waits at most a moment for handlers still running (a slow fault's sleep), not 60 s.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = _bound_port(site)
        self._qr_expiry = asyncio.create_task(self._sandbox.expire_qr_codes(), name=QR_EXPIRY_TASK)
        return self

    async def close(self) -> None:
        if self._qr_expiry is not None:
            self._qr_expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._qr_expiry
            self._qr_expiry = None
        self._sandbox.close()
        # Deliveries may reach a bot that answers through this server: let them finish first.
        await self._deliverer.flush()
        # End the event streams, or the runner would wait for them (a minute) before closing.
        self._changes.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._deliverer.close()

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
            self._sandbox.qr_failures += times

        self._call(set_failures)

    # -- control: the phone and the customer ---------------------------------------------------
    #
    # ``name`` is an API name or, when unambiguous, a friendly name (KeyError otherwise).
    # A refusal (rotating the QR of a connected instance) raises ``Refused``, the exception
    # the HTTP control endpoints answer with.

    def instance(self, name: str) -> FakeInstance:
        """An instance by API name (or, when unambiguous, by friendly name)."""
        return self._sandbox.find(name)

    def count_instances(self, display_name: str) -> int:
        """How many instances carry the friendly name ``display_name``."""
        return self._sandbox.count(display_name)

    def scan(self, name: str, *, profile_name: str | None = None) -> None:
        """Simulate the phone scanning the QR: the instance becomes ``open``."""
        self._call(lambda: self._sandbox.scan(self.instance(name), profile_name=profile_name))

    def logout(self, name: str) -> None:
        """Simulate logging out (or the phone unlinking): the instance becomes ``close``."""
        self._call(lambda: self._sandbox.disconnect(self.instance(name)))

    def rotate_qr(self, name: str) -> None:
        """Issue a new QR code now (as expiry would)."""
        self._call(lambda: self._sandbox.rotate_qr(self.instance(name)))

    def receive_message(
        self, name: str, from_number: str, text: str, *, push_name: str | None = None
    ) -> str:
        """Simulate an incoming WhatsApp message; delivers ``messages.upsert``. Returns its id."""
        return self._call(
            lambda: self._sandbox.receive_message(
                self.instance(name), from_number, text, push_name=push_name
            )
        )

    def send_receipt(self, name: str, message_id: str, status: str) -> str:
        """Send the receipt ``status`` (sent, delivered, read, failed) of a message the
        instance sent, as ``messages.update``; the message's status moves forward only. Its
        status now."""
        return self._call(lambda: self._sandbox.receipt(self.instance(name), message_id, status))

    def read_chat(self, name: str, number: str) -> list[str]:
        """The customer ``number`` reads what the instance sent them: a read receipt for each
        message not read yet. Their ids."""
        return self._call(lambda: self._sandbox.read_chat(self.instance(name), number))

    def sent_messages(self, name: str) -> list[dict[str, Any]]:
        """What was sent from an instance, oldest first."""
        return list(self.instance(name).sent)

    def received_messages(self, name: str) -> list[dict[str, Any]]:
        """What customers sent to an instance, oldest first (``{id, from, push_name, text,
        at}`` each)."""
        return list(self.instance(name).received)

    def send_times(self, name: str) -> list[float]:
        """When each message sent from an instance was accepted, oldest first: wall-clock
        Unix seconds (``time.time()``), the clock the pacing rules count with."""
        return self.instance(name).send_times()

    async def flush_deliveries(self) -> None:
        """Wait until every webhook delivery started so far has finished."""
        await self._deliverer.flush()

    # -- control: the gateway's pacing rules ---------------------------------------------------

    def limit_sends(self, per_minute: int | None, *, retry_after: float | None = None) -> None:
        """At most ``per_minute`` sends per instance within any 60 s (None: no limit).

        A send beyond it is answered ``429`` with ``Retry-After``: ``retry_after`` when given,
        else the seconds until the oldest send in the window leaves it (rounded up). It is not
        made, so it is not recorded."""
        self._call(lambda: self._sandbox.pacing.limit(per_minute, retry_after=retry_after))

    def set_strict(self, enabled: bool, *, burst: int = 3, window: float = 5.0) -> None:
        """Anti-spam: a send that would make an instance send more than ``burst`` messages
        within ``window`` seconds (by default more than 3 within 5 s) disconnects it: state
        ``close``, ``connection.update`` with ``statusReason`` 428, ``stats["spam_disconnects"]``
        counted. That send and every later one get 400 "not connected" until it is scanned
        again."""
        self._call(lambda: self._sandbox.pacing.set_strict(enabled, burst=burst, window=window))


async def _to_dev_phone(request: web.Request) -> web.Response:
    raise web.HTTPFound(DEV_PHONE_PATH)


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
