"""Send operations. A send is never resent after an ambiguous failure: a duplicated WhatsApp
message cannot be taken back, so such a failure raises OutcomeUnknownError instead."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import _json
from . import _validate as check
from ._http import Call, RawResponse
from .errors import InvalidRequestError
from .models import ListSection, MediaType, ReplyButton, SendResult

if TYPE_CHECKING:
    from .client import AsyncWachat

_MAX_BUTTONS = 3


class AsyncMessages:
    """``wa.messages``: send WhatsApp messages from a connected instance.

    ``name`` is the API instance name; ``number`` the recipient, digits with country code
    (``+``, spaces and dashes are dropped). ``delay`` is the typing delay in milliseconds (the
    server picks 3-5 s when omitted).
    """

    def __init__(self, client: AsyncWachat) -> None:
        self._client = client

    async def send_text(
        self,
        name: str,
        number: str,
        message: str,
        *,
        delay: int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> SendResult:
        body = _base(name, number, "text", delay)
        body["message"] = check.text("message", message)
        return await self._send("messages.send_text", "/send/text", body, timeout, max_retries)

    async def send_media(
        self,
        name: str,
        number: str,
        media_url: str,
        *,
        media_type: MediaType | str,
        caption: str | None = None,
        file_name: str | None = None,
        mimetype: str | None = None,
        delay: int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> SendResult:
        """Send an image, video, document or audio by URL (``caption`` is ignored for audio)."""
        kind = check.choice("media_type", media_type, MediaType)
        body = _base(name, number, kind.value, delay)
        body["mediaUrl"] = check.media_url("media_url", media_url)
        _put(body, "message", caption)
        _put(body, "fileName", file_name)
        _put(body, "mimetype", mimetype)
        return await self._send("messages.send_media", "/send/media", body, timeout, max_retries)

    async def send_location(
        self,
        name: str,
        number: str,
        *,
        latitude: float,
        longitude: float,
        place_name: str | None = None,
        address: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> SendResult:
        body: dict[str, Any] = {
            "instanceName": check.api_name(name),
            "number": check.number(number),
            "latitude": check.coordinate("latitude", latitude, 90),
            "longitude": check.coordinate("longitude", longitude, 180),
        }
        _put(body, "name", place_name)
        _put(body, "address", address)
        return await self._send(
            "messages.send_location", "/send-location", body, timeout, max_retries
        )

    async def send_list(
        self,
        name: str,
        number: str,
        *,
        title: str,
        text: str,
        button_text: str,
        sections: Sequence[ListSection],
        footer_text: str | None = None,
        delay: int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> SendResult:
        """Send a list menu: a button that opens ``sections`` of selectable rows."""
        checked = check.non_empty("sections", sections)
        wire_sections = []
        for i, section in enumerate(checked):
            if not isinstance(section, ListSection):
                raise InvalidRequestError(f"sections[{i}] must be a ListSection")
            rows = []
            for j, row in enumerate(check.non_empty(f"sections[{i}].rows", section.rows)):
                wire_row: dict[str, Any] = {
                    "title": check.text(f"sections[{i}].rows[{j}].title", row.title)
                }
                _put(wire_row, "description", row.description)
                _put(wire_row, "rowId", row.row_id)
                rows.append(wire_row)
            wire_sections.append(
                {"title": check.text(f"sections[{i}].title", section.title), "rows": rows}
            )
        interactive: dict[str, Any] = {
            "type": "list",
            "title": check.text("title", title),
            "text": check.text("text", text),
            "buttonText": check.text("button_text", button_text),
            "sections": wire_sections,
        }
        _put(interactive, "footerText", footer_text)
        body = _base(name, number, "interactive", delay)
        body["interactive"] = interactive
        return await self._send("messages.send_list", "/send/list", body, timeout, max_retries)

    async def send_buttons(
        self,
        name: str,
        number: str,
        *,
        text: str,
        buttons: Sequence[ReplyButton | str],
        title: str | None = None,
        footer_text: str | None = None,
        delay: int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> SendResult:
        """Send up to three quick-reply buttons. **Experimental**: Wachat has not published the
        inner shape, so this sends the best reading of its docs, by analogy with the list:
        ``interactive = {type: "button", title?, text, footerText?, buttons: [{id, text}]}``.
        Plain strings become buttons with ids ``"1"``, ``"2"``, ``"3"``.
        """
        items = check.non_empty("buttons", buttons)
        if len(items) > _MAX_BUTTONS:
            raise InvalidRequestError(f"at most {_MAX_BUTTONS} reply buttons, got {len(items)}")
        wire_buttons = []
        for i, button in enumerate(items, start=1):
            if isinstance(button, str):
                button = ReplyButton(id=str(i), text=button)
            wire_buttons.append(
                {
                    "id": check.text(f"buttons[{i - 1}].id", button.id),
                    "text": check.text(f"buttons[{i - 1}].text", button.text),
                }
            )
        interactive: dict[str, Any] = {
            "type": "button",
            "text": check.text("text", text),
            "buttons": wire_buttons,
        }
        _put(interactive, "title", title)
        _put(interactive, "footerText", footer_text)
        body = _base(name, number, "interactive", delay)
        body["interactive"] = interactive
        return await self._send("messages.send_buttons", "/send/button", body, timeout, max_retries)

    async def _send(
        self,
        operation: str,
        path: str,
        body: dict[str, Any],
        timeout: float | None,
        max_retries: int | None,
    ) -> SendResult:
        call = Call(operation, "POST", path, json=body)
        return await self._client._execute(
            call, _decode_send, timeout=timeout, max_retries=max_retries
        )


def _base(name: str, number: str, kind: str, delay: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "instanceName": check.api_name(name),
        "number": check.number(number),
        "type": kind,
    }
    if delay is not None:
        body["delay"] = check.non_negative_int("delay", delay)
    return body


def _put(body: dict[str, Any], key: str, value: str | None) -> None:
    if value is not None:
        body[key] = check.text(key, value, allow_blank=True)


def _decode_send(raw: RawResponse) -> SendResult:
    """The success body is undocumented: keep it all; read ``success``/``message`` if typed."""
    try:
        data: Any = _json.loads(raw.body) if raw.body else None
    except (_json.JSONDecodeError, UnicodeDecodeError):
        data = raw.text()
    success = message = None
    if isinstance(data, dict):
        success = data.get("success") if isinstance(data.get("success"), bool) else None
        message = data.get("message") if isinstance(data.get("message"), str) else None
    return SendResult(status_code=raw.status, success=success, message=message, raw=data)
