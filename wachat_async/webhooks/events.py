"""Incoming webhook events: typed, read defensively, the whole payload always kept.

Event payloads are not published. The typed events below follow the Evolution API events of
the same names (which Wachat's names match); every field is read defensively and ``raw``
always holds the whole payload. An event type this library does not know arrives as a plain
:class:`WebhookEvent`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from .. import _json
from .._decode import converter
from .._receipts import MessageStatus, receipt_status
from ..errors import WebhookPayloadError, WebhookSignatureError
from ..models import ConnectionState, QrCode, WebhookEventType
from .signature import timestamp_seconds

__all__ = [
    "ButtonReply",
    "ChatsUpdate",
    "ConnectionUpdate",
    "ContactsUpdate",
    "ListReply",
    "MessageKind",
    "MessageReceived",
    "MessageStatusUpdate",
    "QrCodeUpdated",
    "Receipt",
    "WebhookEvent",
    "parse_event",
]

EVENT_HEADER = "X-Wachat-Event"
TIMESTAMP_HEADER = "X-Wachat-Timestamp"
SIGNATURE_HEADER = "X-Wachat-Signature"
WEBHOOK_ID_HEADER = "X-Wachat-Webhook-Id"


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


class MessageKind(enum.StrEnum):
    """What an incoming message is, read from the ``message`` member's content."""

    TEXT = "text"
    MEDIA = "media"
    LOCATION = "location"
    LIST_REPLY = "list_reply"
    BUTTON_REPLY = "button_reply"
    OTHER = "other"


#: Content keys of ``message`` (Evolution API / Baileys) and the kind each one means.
_CONTENT_KINDS = {
    "conversation": MessageKind.TEXT,
    "extendedTextMessage": MessageKind.TEXT,
    "imageMessage": MessageKind.MEDIA,
    "videoMessage": MessageKind.MEDIA,
    "audioMessage": MessageKind.MEDIA,
    "documentMessage": MessageKind.MEDIA,
    "stickerMessage": MessageKind.MEDIA,
    "locationMessage": MessageKind.LOCATION,
    "liveLocationMessage": MessageKind.LOCATION,
    "listResponseMessage": MessageKind.LIST_REPLY,
    "buttonsResponseMessage": MessageKind.BUTTON_REPLY,
    "templateButtonReplyMessage": MessageKind.BUTTON_REPLY,
}

GROUP_SUFFIX = "@g.us"


@attrs.frozen
class MessageReceived(WebhookEvent):
    """``messages.upsert``: a message arrived (or was sent from the phone: see ``from_me``).

    Inferred shape (Evolution API): ``data = {key: {remoteJid, fromMe, id, participant?},
    pushName, message: {conversation | extendedTextMessage.text | ...}, messageType,
    messageTimestamp}``. A customer's choice in a list or of a button arrives as the subclass
    :class:`ListReply` or :class:`ButtonReply`.
    """

    message_id: str | None = None
    #: The chat: ``<number>@s.whatsapp.net`` for a private chat, ``<id>@g.us`` for a group.
    remote_jid: str | None = None
    from_me: bool | None = None
    push_name: str | None = None
    message_type: str | None = None
    #: The text of a text message, or the caption of a media message.
    text: str | None = None
    kind: MessageKind = MessageKind.OTHER
    #: Who wrote it in a group chat (``key.participant``); None in a private chat.
    participant: str | None = None

    @property
    def is_group(self) -> bool:
        return bool(self.remote_jid and self.remote_jid.endswith(GROUP_SUFFIX))

    @property
    def sender_number(self) -> str | None:
        """Digits of the sender: from ``remote_jid`` (``628123456789@s.whatsapp.net``) in a
        private chat, from ``participant`` in a group."""
        jid = self.participant if self.is_group else self.remote_jid
        if not jid:
            return None
        user = jid.split("@", 1)[0].split(":", 1)[0]
        return user if user.isdigit() else None


@attrs.frozen
class ListReply(MessageReceived):
    """The customer chose a row of a list message (``listResponseMessage``): ``selected_id``
    is the row's id (``singleSelectReply.selectedRowId``), ``text`` its title."""

    selected_id: str | None = None


@attrs.frozen
class ButtonReply(MessageReceived):
    """The customer pressed a quick-reply button (``buttonsResponseMessage``):
    ``selected_id`` is the button's id (``selectedButtonId``), ``text`` its label."""

    selected_id: str | None = None


@attrs.frozen
class MessageStatusUpdate(WebhookEvent):
    """``messages.update``: a receipt, the status of a message an instance sent.

    Wachat has not published its shape; this follows the Evolution API's ``messages.update``:
    ``data = {keyId | key: {id, remoteJid, fromMe}, remoteJid, fromMe, status}`` (or a list of
    them: the first is read), ``status`` one of ``SERVER_ACK``, ``DELIVERY_ACK``, ``READ``,
    ``PLAYED``, ``ERROR`` (``PENDING`` and Baileys' numbers 0-5 are read too). ``status`` is
    the spelling as sent, ``message_status`` what it means (None for one not known); ``raw``
    holds the whole payload.
    """

    message_id: str | None = None
    remote_jid: str | None = None
    status: str | None = None
    message_status: MessageStatus | None = None

    @property
    def recipient(self) -> str | None:
        """Digits of the chat the message went to (from ``remote_jid``)."""
        user = (self.remote_jid or "").split("@", 1)[0].split(":", 1)[0]
        return user if user.isdigit() else None


#: A receipt: another name for :class:`MessageStatusUpdate`.
Receipt = MessageStatusUpdate


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
        ("templateButtonReplyMessage", "selectedDisplayText"),
        ("listResponseMessage", "title"),
    ):
        text = _get(message, *path)
        if isinstance(text, str):
            return text
    return None


def _message_kind(message: Any) -> MessageKind:
    if isinstance(message, Mapping):
        for key in message:
            kind = _CONTENT_KINDS.get(key)
            if kind is not None:
                return kind
    return MessageKind.OTHER


def _message_event(common: dict[str, Any], data: Any) -> MessageReceived:
    message = _get(data, "message")
    kind = _message_kind(message)
    fields: dict[str, Any] = {
        **common,
        "message_id": _typed(_get(data, "key", "id"), str),
        "remote_jid": _typed(_get(data, "key", "remoteJid"), str),
        "from_me": _typed(_get(data, "key", "fromMe"), bool),
        "participant": _typed(_get(data, "key", "participant"), str),
        "push_name": _typed(_get(data, "pushName"), str),
        "message_type": _typed(_get(data, "messageType"), str),
        "text": _message_text(message),
        "kind": kind,
    }
    if kind is MessageKind.LIST_REPLY:
        selected = _get(message, "listResponseMessage", "singleSelectReply", "selectedRowId")
        return ListReply(**fields, selected_id=_typed(selected, str))
    if kind is MessageKind.BUTTON_REPLY:
        selected = _get(message, "buttonsResponseMessage", "selectedButtonId") or _get(
            message, "templateButtonReplyMessage", "selectedId"
        )
        return ButtonReply(**fields, selected_id=_typed(selected, str))
    return MessageReceived(**fields)


def parse_event(headers: Mapping[str, str], body: str | bytes) -> WebhookEvent:
    """A typed event from a delivery's headers and raw body (verify the signature first).

    The event name comes from the body's ``event``, which the signature covers; the unsigned
    ``X-Wachat-Event`` header is never trusted for it. Raises :class:`WebhookPayloadError` when
    the body is not a JSON object.
    """
    try:
        payload = _json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        problem: str | None = str(exc)
    else:
        problem = None
    if problem is not None:
        raise WebhookPayloadError(f"webhook body is not JSON: {problem}")
    if not isinstance(payload, dict):
        raise WebhookPayloadError("webhook body is not a JSON object")
    lowered = {k.lower(): v for k, v in headers.items()}
    name = _typed(payload.get("event"), str) or "unknown"
    # MESSAGES_UPSERT (the configuration spelling) is messages.upsert; other names stay as sent.
    known = name.strip().lower().replace("_", ".")
    event = WebhookEventType(
        known if known in WebhookEventType._value2member_map_ else name.strip()
    )
    data = payload.get("data")
    instance = _typed(payload.get("instance"), str) or _typed(_get(data, "instance"), str)
    stamp = lowered.get(TIMESTAMP_HEADER.lower())
    try:
        timestamp = timestamp_seconds(stamp) if stamp else None
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
            qrcode = converter.structure(qr_data, QrCode) if qr_data else None
        except Exception:
            qrcode = None
        return QrCodeUpdated(**common, qrcode=qrcode)
    if event is WebhookEventType.MESSAGES_UPSERT:
        return _message_event(common, data[0] if isinstance(data, list) and data else data)
    if event is WebhookEventType.MESSAGES_UPDATE:
        update = data[0] if isinstance(data, list) and data else data
        status = _get(update, "status")
        if status is None:
            status = _get(update, "update", "status")
        if isinstance(status, bool) or not isinstance(status, str | int):
            status = None
        return MessageStatusUpdate(
            **common,
            message_id=_typed(_get(update, "key", "id") or _get(update, "keyId"), str),
            remote_jid=_typed(_get(update, "key", "remoteJid") or _get(update, "remoteJid"), str),
            status=None if status is None else str(status),
            message_status=receipt_status(status),
        )
    if event is WebhookEventType.CONTACTS_UPDATE:
        return ContactsUpdate(**common)
    if event is WebhookEventType.CHATS_UPDATE:
        return ChatsUpdate(**common)
    return WebhookEvent(**common)
