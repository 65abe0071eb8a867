"""Webhooks: manage them (``wa.webhooks``), and verify, parse and serve incoming deliveries.

Deliveries carry ``X-Wachat-Event``, ``X-Wachat-Timestamp``, ``X-Wachat-Signature`` and
``X-Wachat-Webhook-Id``. The signature is HMAC-SHA256, keyed with the webhook secret, over
``"<timestamp>.<raw body>"``. Its encoding is not published, so :func:`verify_signature`
accepts hex (either case) and base64 (standard or URL-safe), each with or without a
``sha256=`` prefix, and compares in constant time.

Event payloads are not published either. The typed events below follow the Evolution API
events of the same names (which Wachat's names match); every field is read defensively and
``raw`` always holds the whole payload.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from . import _convert, _json
from . import _validate as check
from ._http import Call, RawResponse
from .errors import InvalidRequestError, WachatError, WebhookSignatureError
from .models import ConnectionState, QrCode, Webhook, WebhookEventType

if TYPE_CHECKING:
    from .client import AsyncWachat

logger = logging.getLogger("wachat_async")

__all__ = [
    "ChatsUpdate",
    "ConnectionUpdate",
    "ContactsUpdate",
    "MessageReceived",
    "MessageStatusUpdate",
    "QrCodeUpdated",
    "WebhookEvent",
    "WebhookPayloadError",
    "WebhookReceiver",
    "parse_event",
    "sign",
    "verify_signature",
]

EVENT_HEADER = "X-Wachat-Event"
TIMESTAMP_HEADER = "X-Wachat-Timestamp"
SIGNATURE_HEADER = "X-Wachat-Signature"
WEBHOOK_ID_HEADER = "X-Wachat-Webhook-Id"


class WebhookPayloadError(WachatError, ValueError):
    """An incoming delivery whose body is not a JSON object."""


# -- management -----------------------------------------------------------------------------


class AsyncWebhooks:
    """``wa.webhooks``: list, create and update the webhooks of your account."""

    def __init__(self, client: AsyncWachat) -> None:
        self._client = client

    async def list(
        self,
        instance_name: str | None = None,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> list[Webhook]:
        """Webhooks of the account, or of one instance (secrets come back masked)."""
        params = None if instance_name is None else {"instanceName": check.api_name(instance_name)}
        call = Call("webhooks.list", "GET", "/webhooks", params=params)
        return await self._client._execute(
            call, _decode_webhooks, timeout=timeout, max_retries=max_retries
        )

    async def upsert(
        self,
        url: str,
        *,
        id: int | None = None,
        name: str | None = None,
        events: Sequence[WebhookEventType | str] | None = None,
        instance_name: str | None = None,
        enabled: bool | None = None,
        secret: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Webhook:
        """Create a webhook, or update webhook ``id``. ``url`` must be https (plain http is
        accepted only for a loopback URL while the client itself talks to a loopback sandbox).
        Omit ``instance_name`` to receive events of every instance; omit ``secret`` to have one
        generated. Creating (no ``id``) is never resent after an ambiguous failure."""
        body: dict[str, Any] = {
            "url": check.url(
                "url", url, allow_loopback_http=self._client.settings.talks_to_loopback
            )
        }
        if id is not None:
            if not isinstance(id, int) or isinstance(id, bool):
                raise InvalidRequestError(f"id must be an integer, got {id!r}")
            body["id"] = id
        if name is not None:
            body["name"] = check.text("name", name)
        if events is not None:
            body["events"] = [
                e.value
                for e in (
                    check.choice("events", e, WebhookEventType)
                    for e in check.non_empty("events", events)
                )
            ]
        if instance_name is not None:
            body["instanceName"] = check.api_name(instance_name)
        if enabled is not None:
            body["enabled"] = check.flag("enabled", enabled)
        if secret is not None:
            body["secret"] = check.text("secret", secret)
        operation = "webhooks.update" if id is not None else "webhooks.create"
        call = Call(operation, "POST", "/webhooks", json=body)
        # An update names its target, so resending it is harmless; a create is not (no reconciler:
        # an ambiguous create raises OutcomeUnknownError).
        return await self._client._execute(
            call,
            _decode_webhook,
            timeout=timeout,
            max_retries=max_retries,
            reconcile=_resend_update if id is not None else None,
        )


async def _resend_update(error: WachatError, started: float, processed: bool) -> None:
    """Updating webhook ``id`` twice leaves it as updating once: say it is safe to resend."""
    if processed:
        raise error
    return


def _decode_webhooks(raw: RawResponse) -> list[Webhook]:
    return _convert.decode(raw, list[Webhook], key="webhooks")


def _decode_webhook(raw: RawResponse) -> Webhook:
    return _convert.decode(raw, Webhook, key="webhook")


# -- signatures -----------------------------------------------------------------------------


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(secret: str | bytes, timestamp: str | int, body: str | bytes) -> str:
    """The lowercase hex HMAC-SHA256 of ``"<timestamp>.<body>"`` (what the fake server sends)."""
    message = _as_bytes(str(timestamp)) + b"." + _as_bytes(body)
    return hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()


def _signature_digest(signature: str) -> bytes | None:
    """The 32-byte digest in a hex or base64 signature, with or without ``sha256=``."""
    value = signature.strip()
    if value[:7].lower() == "sha256=":
        value = value[7:].strip()
    if len(value) == 64:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    padded = value + "=" * (-len(value) % 4)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            digest = decoder(padded.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
        if len(digest) == 32:
            return digest
    return None


def _timestamp_seconds(timestamp: str | int | float) -> float:
    try:
        value = float(timestamp)
    except (TypeError, ValueError):
        raise WebhookSignatureError("timestamp is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise WebhookSignatureError("timestamp is not a finite number")
    return value / 1000.0 if value > 1e11 else value  # milliseconds since the epoch


def verify_signature(
    secret: str | bytes | Sequence[str | bytes],
    timestamp: str | int | float | None,
    body: str | bytes,
    signature: str | None,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> None:
    """Check a delivery; raise :class:`WebhookSignatureError` saying which check failed.

    ``secret`` may be a list while you rotate secrets: any one of them may match. ``timestamp``
    must be within ``tolerance`` seconds of ``now`` (seconds or milliseconds since the epoch).
    """
    if not signature or not signature.strip():
        raise WebhookSignatureError("missing signature")
    if timestamp is None or not str(timestamp).strip():
        raise WebhookSignatureError("missing timestamp")
    sent_at = _timestamp_seconds(timestamp)
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise WebhookSignatureError(
            f"timestamp is {current - sent_at:+.0f} s from now, "
            f"outside the {tolerance:g} s tolerance"
        )
    digest = _signature_digest(signature)
    if digest is None:
        raise WebhookSignatureError("signature is neither hex nor base64 SHA-256")
    secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
    if not secrets or any(not s for s in secrets):
        raise WebhookSignatureError("no webhook secret configured")
    message = str(timestamp).strip().encode() + b"." + _as_bytes(body)
    matched = False
    for key in secrets:
        expected = hmac.new(_as_bytes(key), message, hashlib.sha256).digest()
        matched |= hmac.compare_digest(expected, digest)
    if not matched:
        raise WebhookSignatureError("signature does not match the body and timestamp")


# -- events ---------------------------------------------------------------------------------


@attrs.frozen
class WebhookEvent:
    """An incoming delivery. Subclasses add typed fields; ``raw`` is always the whole payload.

    An event type this library does not know arrives as a plain ``WebhookEvent``.
    """

    event: WebhookEventType
    #: The instance the event is about (the API name), when the payload says.
    instance: str | None = None
    #: The payload's ``data`` member (or None).
    data: Any = attrs.field(default=None, repr=False)
    webhook_id: str | None = None
    #: When Wachat signed the delivery (seconds since the epoch), from the header.
    timestamp: float | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen
class ConnectionUpdate(WebhookEvent):
    """``connection.update``: the instance connected (QR scanned), is connecting, or closed.
    Inferred shape: ``data = {instance, state, statusReason}``."""

    state: ConnectionState | None = None
    status_reason: int | None = None


@attrs.frozen
class QrCodeUpdated(WebhookEvent):
    """``qrcode.updated``: a new QR code. Inferred: ``data = {qrcode: {code, base64, ...}}``."""

    qrcode: QrCode | None = None


@attrs.frozen
class MessageReceived(WebhookEvent):
    """``messages.upsert``: a message arrived (or was sent from the phone: see ``from_me``).

    Inferred shape (Evolution API): ``data = {key: {remoteJid, fromMe, id}, pushName,
    message: {conversation | extendedTextMessage.text | ...}, messageType, messageTimestamp}``.
    """

    message_id: str | None = None
    remote_jid: str | None = None
    from_me: bool | None = None
    push_name: str | None = None
    message_type: str | None = None
    #: The text of a text message, or the caption of a media message.
    text: str | None = None

    @property
    def sender_number(self) -> str | None:
        """Digits of the sender, from ``remote_jid`` (``628123456789@s.whatsapp.net``)."""
        if not self.remote_jid:
            return None
        user = self.remote_jid.split("@", 1)[0].split(":", 1)[0]
        return user if user.isdigit() else None


@attrs.frozen
class MessageStatusUpdate(WebhookEvent):
    """``messages.update``: delivery status of a sent message (inferred: ``status``, ``key``)."""

    message_id: str | None = None
    remote_jid: str | None = None
    status: str | None = None


@attrs.frozen
class ContactsUpdate(WebhookEvent):
    """``contacts.update``: ``data`` is a list of contacts (inferred)."""


@attrs.frozen
class ChatsUpdate(WebhookEvent):
    """``chats.update``: ``data`` is a list of chats (inferred)."""


def _get(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _typed(value: Any, kind: type) -> Any:
    if isinstance(value, bool) and kind is not bool:
        return None
    return value if isinstance(value, kind) else None


def _message_text(message: Any) -> str | None:
    for path in (
        ("conversation",),
        ("extendedTextMessage", "text"),
        ("imageMessage", "caption"),
        ("videoMessage", "caption"),
        ("documentMessage", "caption"),
        ("buttonsResponseMessage", "selectedDisplayText"),
        ("listResponseMessage", "title"),
    ):
        text = _get(message, *path)
        if isinstance(text, str):
            return text
    return None


def parse_event(headers: Mapping[str, str], body: str | bytes) -> WebhookEvent:
    """A typed event from a delivery's headers and raw body (verify the signature first).

    The event name comes from ``X-Wachat-Event``, else from the body's ``event``.
    Raises :class:`WebhookPayloadError` when the body is not a JSON object.
    """
    try:
        payload = _json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookPayloadError(f"webhook body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise WebhookPayloadError("webhook body is not a JSON object")
    lowered = {k.lower(): v for k, v in headers.items()}
    name = lowered.get(EVENT_HEADER.lower()) or _typed(payload.get("event"), str) or "unknown"
    # MESSAGES_UPSERT (the configuration spelling) is messages.upsert; other names stay as sent.
    known = name.strip().lower().replace("_", ".")
    event = WebhookEventType(
        known if known in WebhookEventType._value2member_map_ else name.strip()
    )
    data = payload.get("data")
    instance = _typed(payload.get("instance"), str) or _typed(_get(data, "instance"), str)
    stamp = lowered.get(TIMESTAMP_HEADER.lower())
    try:
        timestamp = _timestamp_seconds(stamp) if stamp else None
    except WebhookSignatureError:
        timestamp = None
    common: dict[str, Any] = {
        "event": event,
        "instance": instance,
        "data": data,
        "webhook_id": lowered.get(WEBHOOK_ID_HEADER.lower()),
        "timestamp": timestamp,
        "raw": payload,
    }
    if event is WebhookEventType.CONNECTION_UPDATE:
        state = _typed(_get(data, "state"), str)
        return ConnectionUpdate(
            **common,
            state=ConnectionState(state) if state else None,
            status_reason=_typed(_get(data, "statusReason"), int),
        )
    if event is WebhookEventType.QRCODE_UPDATED:
        qr_data = _get(data, "qrcode") if isinstance(_get(data, "qrcode"), Mapping) else data
        try:
            qrcode = _convert.converter.structure(qr_data, QrCode) if qr_data else None
        except Exception:
            qrcode = None
        return QrCodeUpdated(**common, qrcode=qrcode)
    if event is WebhookEventType.MESSAGES_UPSERT:
        message = data[0] if isinstance(data, list) and data else data
        return MessageReceived(
            **common,
            message_id=_typed(_get(message, "key", "id"), str),
            remote_jid=_typed(_get(message, "key", "remoteJid"), str),
            from_me=_typed(_get(message, "key", "fromMe"), bool),
            push_name=_typed(_get(message, "pushName"), str),
            message_type=_typed(_get(message, "messageType"), str),
            text=_message_text(_get(message, "message")),
        )
    if event is WebhookEventType.MESSAGES_UPDATE:
        update = data[0] if isinstance(data, list) and data else data
        return MessageStatusUpdate(
            **common,
            message_id=_typed(_get(update, "key", "id") or _get(update, "keyId"), str),
            remote_jid=_typed(_get(update, "key", "remoteJid") or _get(update, "remoteJid"), str),
            status=_typed(_get(update, "status") or _get(update, "update", "status"), str),
        )
    if event is WebhookEventType.CONTACTS_UPDATE:
        return ContactsUpdate(**common)
    if event is WebhookEventType.CHATS_UPDATE:
        return ChatsUpdate(**common)
    return WebhookEvent(**common)


# -- receiving ------------------------------------------------------------------------------

EventHandler = Callable[[WebhookEvent], Awaitable[None]]


class WebhookReceiver:
    """Receives deliveries over aiohttp: verifies, parses, answers, then runs your handler.

    Answers 401 when verification fails, 400 when the body is unreadable, and 200 as soon as
    the event is accepted; ``handler`` then runs in its own task, so a slow handler never
    delays Wachat's delivery. Mount it in your own app::

        receiver = WebhookReceiver(secret, on_event)
        app.router.add_post("/wachat/webhook", receiver.handle)   # or
        app.add_subapp("/wachat", receiver.app())                 # POST /wachat/
    """

    def __init__(
        self,
        secret: str | bytes | Sequence[str | bytes],
        handler: EventHandler,
        *,
        tolerance: float = 300.0,
    ) -> None:
        if not secret:
            raise InvalidRequestError(
                "a webhook secret is required: deliveries are always verified"
            )
        self._secret = secret
        self._handler = handler
        self._tolerance = tolerance
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"WebhookReceiver(handler={self._handler!r}, secret='***')"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify_signature(
                self._secret,
                request.headers.get(TIMESTAMP_HEADER),
                body,
                request.headers.get(SIGNATURE_HEADER),
                tolerance=self._tolerance,
            )
        except WebhookSignatureError as exc:
            logger.warning("rejected webhook delivery: %s", exc)
            return web.json_response({"success": False, "error": str(exc)}, status=401)
        try:
            event = parse_event(request.headers, body)
        except WebhookPayloadError as exc:
            return web.json_response({"success": False, "error": str(exc)}, status=400)
        task = asyncio.get_running_loop().create_task(self._run(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response({"success": True})

    async def _run(self, event: WebhookEvent) -> None:
        try:
            await self._handler(event)
        except Exception:
            logger.exception("webhook handler failed for %s", event.event.value)

    async def drain(self) -> None:
        """Wait for the handlers still running."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def app(self, path: str = "/") -> web.Application:
        """A small app that answers ``POST path``; handlers finish before it shuts down."""
        app = web.Application()
        app.router.add_post(path, self.handle)

        async def finish(_: web.Application) -> None:
            await self.drain()

        app.on_cleanup.append(finish)
        return app
