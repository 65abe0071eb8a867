"""The sandbox's world: instances and their state machine, QR codes, webhooks, sends.

A ``WHATSAPP-BAILEYS`` instance starts ``connecting`` with a QR code that is replaced every
``qr_ttl`` seconds; a phone scan makes it ``open``; a logout, the phone unlinking or an
anti-spam disconnect makes it ``close`` (a later scan links it again). A ``WHATSAPP-BUSINESS``
instance is ``open`` from the start and has no QR code. Every transition, every new QR code
and every incoming message is announced to the webhooks that want it, through ``deliver``;
every change (and every send) is also published to the live feed, :mod:`._changes`.

:class:`Sandbox` is the one implementation of what a phone and a customer do: the in-process
methods of :class:`~wachat_async.testing.FakeWachat`, the API handlers and the HTTP control
endpoints all call it. It runs on the server's event loop (FakeWachat hops threads first).
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import secrets
import string
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from ._changes import Changes
from ._pacing import Pacing
from ._web import Refused

CONNECTING, OPEN, CLOSE = "connecting", "open", "close"
BAILEYS, BUSINESS = "WHATSAPP-BAILEYS", "WHATSAPP-BUSINESS"

#: ``statusReason`` of a ``connection.update``: linked, logged out, closed by the network.
LINKED, LOGGED_OUT, CONNECTION_CLOSED = 200, 401, 428

#: A sent message's statuses, in the order they move, and the ``status`` each one has in a
#: ``messages.update`` receipt (the Evolution API's spelling). ``failed`` only follows ``sent``.
RECEIPT_STATUSES = {"sent": "SERVER_ACK", "delivered": "DELIVERY_ACK", "read": "READ"}
FAILED_STATUS = ("failed", "ERROR")
#: By default, a sent message is delivered this many seconds after it was sent.
RECEIPT_DELAY = 0.2


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def token(n: int) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_message_id() -> str:
    return "3EB0" + token(16).upper()


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


@attrs.define
class FakeInstance:
    """One instance held by the fake server."""

    id: int
    display_name: str
    api_name: str
    integration: str
    number: str | None
    options: dict[str, Any]
    state: str = CONNECTING
    qr_code: str | None = None
    qr_png: bytes | None = attrs.field(default=None, repr=False)
    qr_count: int = 0
    qr_issued_at: float = 0.0
    created_at: str = attrs.field(factory=now_iso)
    updated_at: str = attrs.field(factory=now_iso)
    #: Messages sent from this instance: ``{"path", "body", "id", "at", "status"}`` each,
    #: oldest first; ``at`` is wall-clock ``time.time()``, ``status`` sent, delivered, read
    #: or failed (moved by the receipts the sandbox sends).
    sent: list[dict[str, Any]] = attrs.field(factory=list, repr=False)
    #: Messages customers sent to this instance: ``{"id", "from", "push_name", "text",
    #: "selected_id", "at"}`` each, oldest first (``selected_id``: the list row or button
    #: chosen, else None; ``at`` as in :attr:`sent`).
    received: list[dict[str, Any]] = attrs.field(factory=list, repr=False)

    @property
    def owner(self) -> str | None:
        return f"{self.number}@s.whatsapp.net" if self.number and self.state == OPEN else None

    @property
    def profile_name(self) -> str | None:
        """The WhatsApp profile name, known once a phone is linked."""
        name: str | None = self.options.get("profileName")
        return name if self.state == OPEN else None

    @property
    def qr_data_uri(self) -> str | None:
        if self.qr_png is None:
            return None
        return "data:image/png;base64," + base64.b64encode(self.qr_png).decode()

    def send_times(self) -> list[float]:
        return [record["at"] for record in self.sent]

    def view(self) -> dict[str, Any]:
        """The instance as the sandbox control API and the live feed show it (JSON-ready)."""
        waiting = self.integration == BAILEYS and self.state != OPEN and self.qr_code is not None
        return {
            "api_name": self.api_name,
            "display_name": self.display_name,
            "integration": self.integration,
            "state": self.state,
            "number": self.number,
            "profile_name": self.profile_name,
            "qrcode": {"code": self.qr_code, "base64": self.qr_data_uri, "count": self.qr_count}
            if waiting
            else None,
            "sent_count": len(self.sent),
            "received_count": len(self.received),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@attrs.define
class FakeWebhook:
    id: int
    url: str
    name: str | None
    events: list[str]
    enabled: bool
    secret: str = attrs.field(repr=False)
    instance_name: str | None
    created_at: str = attrs.field(factory=now_iso)
    updated_at: str = attrs.field(factory=now_iso)

    def wants(self, event: str, instance: str) -> bool:
        return (
            self.enabled
            and self.instance_name in (None, instance)
            and ("*" in self.events or event in self.events)
        )


class QrSource:
    """New QR codes: each one unique, or taken in turn from ``pool_size`` pre-rendered ones
    (rendering costs a few milliseconds, which would dominate a benchmark)."""

    def __init__(self, pool_size: int | None) -> None:
        self._pool_size = pool_size
        self._pool: list[tuple[str, bytes]] = []
        self._cursor = itertools.count()

    def fill(self) -> None:
        if self._pool_size and not self._pool:
            self._pool = [self._render() for _ in range(self._pool_size)]

    def next(self) -> tuple[str, bytes]:
        if self._pool:
            return self._pool[next(self._cursor) % len(self._pool)]
        return self._render()

    @staticmethod
    def _render() -> tuple[str, bytes]:
        code = f"2@{token(32)},{token(24)},{token(12)}"
        return code, render_qr_png(code)


#: Hands one event to one webhook: ``deliver(hook, event, instance api name, data)``.
Deliver = Callable[[FakeWebhook, str, str, dict[str, Any]], None]


class Sandbox:
    """Instances, webhooks and the rules they live by. See the module docstring."""

    def __init__(
        self,
        *,
        stats: Counter[str],
        deliver: Deliver,
        qr_ttl: float,
        qr_pool: int | None,
        instance_limit: int | None,
        auto_scan: float | None,
        pacing: Pacing,
        changes: Changes,
        receipt_delay: float | None = RECEIPT_DELAY,
    ) -> None:
        self.stats = stats
        #: The live feed of what happens here (the dev phone page follows it).
        self.changes = changes
        self.qr_ttl = qr_ttl
        self.instance_limit = instance_limit
        #: Seconds after which a new WHATSAPP-BAILEYS instance is scanned by itself; None: never.
        self.auto_scan = auto_scan
        self.pacing = pacing
        #: Seconds after a send at which its ``delivered`` receipt is sent; None: never (tests
        #: send receipts themselves, :meth:`receipt`).
        self.receipt_delay = receipt_delay
        self.qr = QrSource(qr_pool)
        #: Instances by API name.
        self.instances: dict[str, FakeInstance] = {}
        self.webhooks: dict[int, FakeWebhook] = {}
        self.qr_failures = 0
        self._deliver = deliver
        self._ids = itertools.count(1)
        self._webhook_ids = itertools.count(1)
        self._auto_scans: dict[str, asyncio.TimerHandle] = {}
        #: Delivered receipts scheduled, by message id.
        self._auto_receipts: dict[str, asyncio.TimerHandle] = {}

    def close(self) -> None:
        """Cancel the scans still scheduled by ``auto_scan``, and the receipts."""
        for handle in [*self._auto_scans.values(), *self._auto_receipts.values()]:
            handle.cancel()
        self._auto_scans.clear()
        self._auto_receipts.clear()

    # -- finding instances ---------------------------------------------------------------------

    def find(self, name: str) -> FakeInstance:
        """An instance by API name or, when unambiguous, by friendly name (KeyError if none)."""
        if name in self.instances:
            return self.instances[name]
        matches = [i for i in list(self.instances.values()) if i.display_name == name]
        if len(matches) == 1:
            return matches[0]
        raise KeyError(f"no single fake instance named {name!r}")

    def by_api_name(self, name: str) -> FakeInstance:
        """An instance as the API finds it: by API name only (404 if none)."""
        inst = self.instances.get(name)
        if inst is None:
            raise Refused(f"Instance {name} not found", status=404)
        return inst

    def count(self, display_name: str) -> int:
        return sum(1 for i in list(self.instances.values()) if i.display_name == display_name)

    # -- life of an instance -------------------------------------------------------------------

    def create(
        self, friendly: str, *, integration: str, number: str | None, options: dict[str, Any]
    ) -> tuple[FakeInstance, str | None]:
        """A new instance and, when its first QR code could not be fetched, why (``qrError``)."""
        if self.instance_limit is not None and len(self.instances) >= self.instance_limit:
            raise Refused(
                f"Instance limit reached for your subscription ({self.instance_limit})", status=403
            )
        inst = FakeInstance(
            id=next(self._ids),
            display_name=friendly,
            api_name=f"t1_{token(8)}_{friendly}",
            integration=integration,
            number=number,
            options=options,
            state=OPEN if integration == BUSINESS else CONNECTING,
        )
        self.instances[inst.api_name] = inst
        self.stats["created"] += 1
        qr_error: str | None = None
        if integration == BAILEYS:
            self._issue_qr(inst, notify=False)
            if self.qr_failures:
                self.qr_failures -= 1
                qr_error = "QR code could not be fetched from the WhatsApp session yet"
            if self.auto_scan is not None:
                self._schedule_auto_scan(inst, self.auto_scan)
        self._changed(inst, "created")
        return inst, qr_error

    def delete(self, inst: FakeInstance) -> None:
        if inst.state == OPEN:
            raise Refused("Instance is still connected. Logout first.", status=409)
        del self.instances[inst.api_name]
        self._cancel_auto_scan(inst)
        self.stats["deleted"] += 1
        self.changes.publish("instance.deleted", lambda: {"api_name": inst.api_name})

    def scan(self, inst: FakeInstance, *, profile_name: str | None = None) -> None:
        """The phone scans the QR code: the instance becomes ``open``."""
        self._cancel_auto_scan(inst)
        inst.state = OPEN
        inst.number = inst.number or "628" + "".join(
            secrets.choice(string.digits) for _ in range(9)
        )
        inst.options["profileName"] = profile_name or inst.display_name
        inst.updated_at = now_iso()
        self._announce_connection(inst, LINKED)

    def disconnect(self, inst: FakeInstance, *, reason: int = LOGGED_OUT) -> None:
        """A logout, or the phone unlinking (``reason`` 401), or the network closing it (428)."""
        self._cancel_auto_scan(inst)
        inst.state = CLOSE
        inst.updated_at = now_iso()
        self._announce_connection(inst, reason)

    def _announce_connection(self, inst: FakeInstance, reason: int) -> None:
        self._changed(inst, "state")
        self.emit(
            "connection.update",
            inst,
            {"instance": inst.api_name, "state": inst.state, "statusReason": reason},
        )

    def _schedule_auto_scan(self, inst: FakeInstance, delay: float) -> None:
        def scan_if_waiting() -> None:
            self._auto_scans.pop(inst.api_name, None)
            if self.instances.get(inst.api_name) is inst and inst.state == CONNECTING:
                self.stats["auto_scans"] += 1
                self.scan(inst)

        loop = asyncio.get_running_loop()
        self._auto_scans[inst.api_name] = loop.call_later(delay, scan_if_waiting)

    def _cancel_auto_scan(self, inst: FakeInstance) -> None:
        handle = self._auto_scans.pop(inst.api_name, None)
        if handle is not None:
            handle.cancel()

    # -- QR codes ------------------------------------------------------------------------------

    def freshen_qr(self, inst: FakeInstance) -> None:
        """Make sure the instance's QR code is current; refused when it has none to show
        (already linked, or an integration without QR codes)."""
        self._require_qr(inst)
        self.refresh_if_expired(inst)

    def rotate_qr(self, inst: FakeInstance) -> None:
        """Issue a new QR code now (as expiry would) and announce it."""
        self._require_qr(inst)
        self._issue_qr(inst)

    def _require_qr(self, inst: FakeInstance) -> None:
        if inst.integration != BAILEYS:
            raise Refused("This integration has no QR code")
        if inst.state == OPEN:
            raise Refused(f"Instance {inst.api_name} is already connected", status=409)

    def _issue_qr(self, inst: FakeInstance, *, notify: bool = True) -> None:
        inst.qr_code, inst.qr_png = self.qr.next()
        inst.qr_count += 1
        inst.qr_issued_at = time.monotonic()
        if notify:
            self._changed(inst, "qr")
            self.emit(
                "qrcode.updated", inst, {"qrcode": {"instance": inst.api_name, **qr_fields(inst)}}
            )

    def refresh_if_expired(self, inst: FakeInstance) -> None:
        if (
            inst.state != OPEN
            and inst.integration == BAILEYS
            and (inst.qr_code is None or time.monotonic() - inst.qr_issued_at >= self.qr_ttl)
        ):
            self._issue_qr(inst)

    def view(self, inst: FakeInstance) -> dict[str, Any]:
        """The instance as the sandbox's control API and dev phone show it (its QR current)."""
        self.refresh_if_expired(inst)
        return inst.view()

    async def expire_qr_codes(self) -> None:
        """Replace expired QR codes, forever (run as a task; reads ``qr_ttl`` each round)."""
        if self.qr_ttl == float("inf"):
            return  # QR codes never expire (benchmarks): nothing to watch
        while True:
            await asyncio.sleep(min(1.0, self.qr_ttl / 2))
            for inst in list(self.instances.values()):
                self.refresh_if_expired(inst)

    # -- messages ------------------------------------------------------------------------------

    def send(self, inst: FakeInstance, path: str, body: dict[str, Any]) -> str:
        """Record a message sent from ``inst``, under the pacing rules; its id."""
        self._require_connected(inst)
        now = time.time()
        times = inst.send_times() if self.pacing.per_minute or self.pacing.strict else []
        retry_after = self.pacing.throttled(times, now)
        if retry_after is not None:
            self.stats["throttled"] += 1
            raise Refused(
                f"Rate limit: {self.pacing.per_minute} messages per minute from instance "
                f"{inst.api_name}; retry after {retry_after:g} s",
                status=429,
                headers={"Retry-After": f"{retry_after:g}"},
            )
        if self.pacing.is_spam(times, now):
            self.stats["spam_disconnects"] += 1
            self.disconnect(inst, reason=CONNECTION_CLOSED)
            self._require_connected(inst)
        message_id = new_message_id()
        record = {"path": path, "body": body, "id": message_id, "at": now, "status": "sent"}
        inst.sent.append(record)
        self.stats["sent"] += 1
        self._message(inst, "out", record)
        if self.receipt_delay is not None:
            self._schedule_delivered(inst, record, self.receipt_delay)
        return message_id

    # -- receipts ------------------------------------------------------------------------------

    def _schedule_delivered(self, inst: FakeInstance, record: dict[str, Any], delay: float) -> None:
        def deliver() -> None:
            self._auto_receipts.pop(record["id"], None)
            if record["status"] == "sent":  # not read or failed meanwhile
                self.receipt(inst, record["id"], "delivered")

        loop = asyncio.get_running_loop()
        self._auto_receipts[record["id"]] = loop.call_later(delay, deliver)

    def receipt(self, inst: FakeInstance, message_id: str, status: str) -> str:
        """Send the receipt ``status`` (sent, delivered, read, failed) of a message ``inst``
        sent, as ``messages.update``, whatever its status is (a test may send them out of
        order); the message's own status moves forward only. Its status now."""
        spelling = RECEIPT_STATUSES.get(status) or (
            FAILED_STATUS[1] if status == FAILED_STATUS[0] else None
        )
        if spelling is None:
            raise Refused(
                f"status must be one of {', '.join([*RECEIPT_STATUSES, FAILED_STATUS[0]])}; "
                f"got {status!r}"
            )
        record = next((r for r in reversed(inst.sent) if r["id"] == message_id), None)
        if record is None:
            raise Refused(f"{inst.api_name} sent no message {message_id!r}", status=404)
        if _moves_forward(record["status"], status):
            record["status"] = status
        jid = f"{record['body'].get('number')}@s.whatsapp.net"
        self.stats[f"receipts.{status}"] += 1
        self.changes.publish(
            "receipt",
            lambda: {"instance": inst.api_name, "id": message_id, "status": record["status"]},
        )
        self.emit(
            "messages.update",
            inst,
            {
                "keyId": message_id,
                "key": {"id": message_id, "remoteJid": jid, "fromMe": True},
                "remoteJid": jid,
                "fromMe": True,
                "status": spelling,
                "instanceId": str(inst.id),
            },
        )
        return str(record["status"])

    def read_chat(self, inst: FakeInstance, number: str) -> list[str]:
        """The customer ``number`` opens the chat: each message ``inst`` sent them that is
        not read (nor failed) yet is read, and its receipt sent. The ids read."""
        unread = [
            r
            for r in inst.sent
            if r["body"].get("number") == number and r["status"] in ("sent", "delivered")
        ]
        for record in unread:
            self.receipt(inst, record["id"], "read")
        return [r["id"] for r in unread]

    def _require_connected(self, inst: FakeInstance) -> None:
        if inst.state != OPEN:
            raise Refused(
                f"Instance {inst.api_name} is not connected (state: {inst.state}); "
                "scan its QR code first"
            )

    def receive_message(
        self, inst: FakeInstance, from_number: str, text: str, *, push_name: str | None = None
    ) -> str:
        """A customer's message reaches ``inst``: it is kept in ``inst.received`` and
        ``messages.upsert`` is delivered. Its id."""
        return self._receive(
            inst, from_number, text, {"conversation": text}, "conversation", push_name, None
        )

    def receive_choice(
        self,
        inst: FakeInstance,
        from_number: str,
        selected_id: str,
        *,
        push_name: str | None = None,
    ) -> str:
        """The customer picks the row or presses the button ``selected_id`` of the newest list
        or buttons message ``inst`` sent them that has it: delivered as ``messages.upsert``
        with a ``listResponseMessage`` or ``buttonsResponseMessage``. Refused (404) when no
        list or buttons message was sent to them, (400) when none has that id."""
        offered: list[str] = []
        interactive = False
        for record in reversed(inst.sent):
            if record["body"].get("number") != from_number:
                continue
            if record["path"] == "/send/list":
                interactive = True
                for section in record["body"]["interactive"]["sections"]:
                    for row in section["rows"]:
                        if row.get("rowId") == selected_id:
                            content = {
                                "title": row["title"],
                                "description": row.get("description"),
                                "listType": 1,
                                "singleSelectReply": {"selectedRowId": selected_id},
                            }
                            return self._receive(
                                inst,
                                from_number,
                                row["title"],
                                {"listResponseMessage": content},
                                "listResponseMessage",
                                push_name,
                                selected_id,
                            )
                        offered.append(str(row.get("rowId")))
            elif record["path"] == "/send/button":
                interactive = True
                for button in record["body"]["interactive"]["buttons"]:
                    if button["id"] == selected_id:
                        content = {
                            "selectedButtonId": selected_id,
                            "selectedDisplayText": button["text"],
                        }
                        return self._receive(
                            inst,
                            from_number,
                            button["text"],
                            {"buttonsResponseMessage": content},
                            "buttonsResponseMessage",
                            push_name,
                            selected_id,
                        )
                    offered.append(button["id"])
        if not interactive:
            raise Refused(
                f"{inst.api_name} sent no list or buttons message to {from_number}", status=404
            )
        raise Refused(
            f"No list row or button {selected_id!r} in what {inst.api_name} sent to "
            f"{from_number} (offered: {', '.join(dict.fromkeys(offered))})"
        )

    def _receive(
        self,
        inst: FakeInstance,
        from_number: str,
        text: str,
        content: dict[str, Any],
        message_type: str,
        push_name: str | None,
        selected_id: str | None,
    ) -> str:
        message_id = new_message_id()
        record = {
            "id": message_id,
            "from": from_number,
            "push_name": push_name,
            "text": text,
            "selected_id": selected_id,
            "at": time.time(),
        }
        inst.received.append(record)
        self._message(inst, "in", record)
        self.emit(
            "messages.upsert",
            inst,
            {
                "key": {
                    "remoteJid": f"{from_number}@s.whatsapp.net",
                    "fromMe": False,
                    "id": message_id,
                },
                "pushName": push_name or from_number,
                "message": content,
                "messageType": message_type,
                "messageTimestamp": int(time.time()),
            },
        )
        self.stats["received"] += 1
        return message_id

    # -- the live feed -------------------------------------------------------------------------

    def _changed(self, inst: FakeInstance, why: str) -> None:
        self.changes.publish("instance", lambda: {"why": why, "instance": inst.view()})

    def _message(self, inst: FakeInstance, direction: str, record: dict[str, Any]) -> None:
        self.changes.publish(
            "message",
            lambda: {"instance": inst.api_name, "direction": direction, "message": record},
        )

    # -- webhooks ------------------------------------------------------------------------------

    def add_webhook(
        self,
        url: str,
        *,
        name: str | None,
        events: list[str],
        enabled: bool,
        secret: str | None,
        instance_name: str | None,
    ) -> FakeWebhook:
        hook = FakeWebhook(
            id=next(self._webhook_ids),
            url=url,
            name=name,
            events=events,
            enabled=enabled,
            secret=secret or "whsec_" + token(32),
            instance_name=instance_name,
        )
        self.webhooks[hook.id] = hook
        self.stats["webhooks_created"] += 1
        return hook

    def emit(self, event: str, inst: FakeInstance, data: dict[str, Any]) -> None:
        """Hand ``event`` to every webhook that wants it."""
        for hook in list(self.webhooks.values()):
            if hook.wants(event, inst.api_name):
                self._deliver(hook, event, inst.api_name, data)


def _moves_forward(current: str, new: str) -> bool:
    order = list(RECEIPT_STATUSES)
    if current == FAILED_STATUS[0] or current == new:
        return False
    if new == FAILED_STATUS[0]:
        return current == "sent"
    return order.index(new) > order.index(current)


def qr_fields(inst: FakeInstance) -> dict[str, Any]:
    """The QR code as the API shows it (``pairingCode``, ``code``, ``base64``, ``count``)."""
    return {
        "pairingCode": "".join(secrets.choice(string.ascii_uppercase) for _ in range(8)),
        "code": inst.qr_code,
        "base64": inst.qr_data_uri,
        "count": inst.qr_count,
    }
