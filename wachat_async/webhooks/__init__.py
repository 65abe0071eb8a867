"""Receiving Wachat's webhook deliveries: verify their signature, parse their event, serve them.

Deliveries carry ``X-Wachat-Timestamp``, ``X-Wachat-Signature`` (HMAC-SHA256 of
``"<timestamp>.<raw body>"`` with the webhook's secret) and ``X-Wachat-Webhook-Id``::

    from wachat_async.webhooks import verify_signature, parse_event

    verify_signature(secret, headers["X-Wachat-Timestamp"], body, headers["X-Wachat-Signature"])
    event = parse_event(headers, body)

:class:`WebhookReceiver` does both for aiohttp, and is the only part that imports
``aiohttp.web``; ``import wachat_async`` alone never does. Managing webhooks is ``wa.webhooks``.
"""

from __future__ import annotations

from ..errors import WebhookPayloadError, WebhookSignatureError
from ..resources.webhooks import AsyncWebhooks
from .events import (
    ButtonReply,
    ChatsUpdate,
    ConnectionUpdate,
    ContactsUpdate,
    ListReply,
    MessageKind,
    MessageReceived,
    MessageStatusUpdate,
    QrCodeUpdated,
    Receipt,
    WebhookEvent,
    parse_event,
)
from .receiver import EventHandler, WebhookReceiver
from .signature import sign, verify_signature

__all__ = [
    "AsyncWebhooks",
    "ButtonReply",
    "ChatsUpdate",
    "ConnectionUpdate",
    "ContactsUpdate",
    "EventHandler",
    "ListReply",
    "MessageKind",
    "MessageReceived",
    "MessageStatusUpdate",
    "QrCodeUpdated",
    "Receipt",
    "WebhookEvent",
    "WebhookPayloadError",
    "WebhookReceiver",
    "WebhookSignatureError",
    "parse_event",
    "sign",
    "verify_signature",
]
