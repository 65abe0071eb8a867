"""Request bodies checked as ../shared/wachat-api/openapi.yaml describes each one.

Every check raises :class:`~wachat_async.testing._web.Refused` (400) with a message naming the
field, as the real API answers a bad body.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .._security import is_loopback_host
from ._web import Refused

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
BOOL_FIELDS = ("rejectCalls", "ignoreGroups", "alwaysOnline", "readMessages", "readStatus")
META_FIELDS = ("metaToken", "metaBusinessId", "metaPhoneNumberId")
_CREATE_FIELDS = frozenset({"instanceName", "number", "integration", *BOOL_FIELDS, *META_FIELDS})


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def require_str(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise Refused(f"{field} is required and must be a non-empty string")
    return value


def optional(body: dict[str, Any], field: str, kind: type, label: str) -> None:
    if field not in body:
        return
    value = body[field]
    ok = (
        isinstance(value, bool)
        if kind is bool
        else isinstance(value, kind) and not isinstance(value, bool)
    )
    if not ok:
        raise Refused(f"{field} must be {label}")


def require_digits(body: dict[str, Any], field: str) -> str:
    """A phone number: digits with the country code, no ``+``."""
    value = require_str(body, field)
    _check_digits(value, field)
    return value


def check_create(body: dict[str, Any]) -> None:
    unknown = set(body) - _CREATE_FIELDS
    if unknown:
        raise Refused(f"Unknown field(s): {', '.join(sorted(unknown))}")
    require_str(body, "instanceName")
    _optional_str(body, "number")
    if "number" in body:
        _check_digits(body["number"], "number")
    if "integration" in body and body["integration"] not in INTEGRATIONS:
        raise Refused(f"integration must be one of {', '.join(INTEGRATIONS)}")
    for field in BOOL_FIELDS:
        optional(body, field, bool, "a boolean")
    for field in META_FIELDS:
        _optional_str(body, field)
    if body.get("integration") == "WHATSAPP-BUSINESS":
        missing = [f for f in META_FIELDS if not body.get(f)]
        if missing:
            raise Refused(f"WHATSAPP-BUSINESS requires {', '.join(missing)}")


def check_send(body: dict[str, Any]) -> None:
    """What every send body carries: the instance, the recipient and an optional delay."""
    require_str(body, "instanceName")
    require_digits(body, "number")
    if "delay" in body and (not is_int(body["delay"]) or body["delay"] < 0):
        raise Refused("delay must be a non-negative integer (milliseconds)")


def check_text(body: dict[str, Any]) -> None:
    if body.get("type") != "text":
        raise Refused('type must be "text"')
    require_str(body, "message")


def check_media(body: dict[str, Any]) -> None:
    if body.get("type") not in MEDIA_TYPES:
        raise Refused(f"type must be one of {', '.join(MEDIA_TYPES)}")
    require_str(body, "mediaUrl")
    _check_media_fields(body)


def check_generic(body: dict[str, Any]) -> None:
    if body.get("type") not in ("text", *MEDIA_TYPES):
        raise Refused("type must be text, image, video, document or audio")
    require_str(body, "message" if body["type"] == "text" else "mediaUrl")
    _check_media_fields(body)


def check_location(body: dict[str, Any]) -> None:
    for field in ("latitude", "longitude"):
        if not is_number(body.get(field)):
            raise Refused(f"{field} is required and must be a number")
    for field in ("name", "address"):
        _optional_str(body, field)


def check_list(body: dict[str, Any]) -> None:
    interactive = _check_interactive(body, "list")
    for field in ("title", "text", "buttonText", "footerText"):
        _optional_str(interactive, field)
    sections = interactive.get("sections")
    if not isinstance(sections, list) or not sections:
        raise Refused("interactive.sections must be a non-empty array")
    for section in sections:
        if not isinstance(section, dict) or not isinstance(section.get("rows"), list):
            raise Refused("each section needs a rows array")
        for row in section["rows"]:
            if not isinstance(row, dict) or not isinstance(row.get("title"), str):
                raise Refused("each row needs a title")


def check_button(body: dict[str, Any]) -> None:
    interactive = _check_interactive(body, "button")
    buttons = interactive.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise Refused("interactive.buttons must hold one to three buttons")


def check_webhook(body: dict[str, Any]) -> None:
    require_str(body, "url")
    parts = urlsplit(body["url"])
    # The real API takes https only; the fake also takes loopback http so tests can receive.
    if not (
        parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))
    ):
        raise Refused("url must be an https URL")
    if "id" in body and not is_int(body["id"]):
        raise Refused("id must be an integer")
    for field in ("name", "secret", "instanceName"):
        _optional_str(body, field)
    optional(body, "enabled", bool, "a boolean")
    if "events" in body:
        events = body["events"]
        if (
            not isinstance(events, list)
            or not events
            or any(e not in WEBHOOK_EVENTS for e in events)
        ):
            raise Refused(f"events must be a non-empty list of {', '.join(WEBHOOK_EVENTS)}")


def _check_digits(value: str, field: str) -> None:
    if not value.isdigit():
        raise Refused(f"{field} must contain digits only, with the country code")


def _optional_str(body: dict[str, Any], field: str) -> None:
    optional(body, field, str, "a string")


def _check_media_fields(body: dict[str, Any]) -> None:
    for field in ("message", "fileName", "mimetype"):
        _optional_str(body, field)


def _check_interactive(body: dict[str, Any], kind: str) -> dict[str, Any]:
    if body.get("type") != "interactive":
        raise Refused('type must be "interactive"')
    interactive = body.get("interactive")
    if not isinstance(interactive, dict):
        raise Refused("interactive is required and must be an object")
    if interactive.get("type", kind) != kind:
        raise Refused(f'interactive.type must be "{kind}"')
    return interactive
