"""``wa.messages``: send WhatsApp messages. A send is never resent after an ambiguous failure:
a duplicated message cannot be taken back, so such a failure raises OutcomeUnknownError."""

from __future__ import annotations

import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any

from .. import _decode
from .. import _validate as check
from .._build import builder
from .._executor import Executor
from .._receipts import MessageLog, MessageRecord, MessageStatus, Receipt
from .._request import Call
from ..bulk.broadcast import broadcast
from ..bulk.campaign import BroadcastProgress, BroadcastResult, Pace, SendSpec
from ..bulk.journal import Journal
from ..errors import InvalidRequestError
from ..models import (
    ButtonsMessage,
    InstanceState,
    ListMessage,
    ListSection,
    LocationMessage,
    MediaMessage,
    MediaType,
    MessagePayload,
    ReplyButton,
    SendResult,
    TextMessage,
)

#: Built on every send_text: the generated builder saves the frozen __init__'s stores.
_text_message = builder(TextMessage)
MAX_BUTTONS = 3


def _put(body: dict[str, Any], key: str, field: str, value: str | None) -> None:
    if value is not None:
        body[key] = check.text(field, value, allow_blank=True)


def _delay(body: dict[str, Any], delay: int | None) -> dict[str, Any]:
    if delay is not None:
        body["delay"] = check.non_negative_int("delay", delay, "milliseconds")
    return body


def _list_sections(sections: Sequence[ListSection]) -> list[dict[str, Any]]:
    wire = []
    for i, section in enumerate(check.non_empty("sections", sections)):
        if not isinstance(section, ListSection):
            raise InvalidRequestError(f"sections[{i}] must be a ListSection")
        rows = []
        for j, row in enumerate(check.non_empty(f"sections[{i}].rows", section.rows)):
            where = f"sections[{i}].rows[{j}]"
            wire_row: dict[str, Any] = {"title": check.text(f"{where}.title", row.title)}
            _put(wire_row, "description", f"{where}.description", row.description)
            _put(wire_row, "rowId", f"{where}.row_id", row.row_id)
            rows.append(wire_row)
        wire.append({"title": check.text(f"sections[{i}].title", section.title), "rows": rows})
    return wire


def _reply_buttons(buttons: Sequence[ReplyButton | str]) -> list[dict[str, str]]:
    items = check.non_empty("buttons", buttons)
    if len(items) > MAX_BUTTONS:
        raise InvalidRequestError(f"at most {MAX_BUTTONS} reply buttons, got {len(items)}")
    wire = []
    for i, button in enumerate(items):
        if isinstance(button, str):
            button = ReplyButton(id=str(i + 1), text=button)
        elif not isinstance(button, ReplyButton):
            raise InvalidRequestError(f"buttons[{i}] must be a ReplyButton or a string")
        wire.append(
            {
                "id": check.text(f"buttons[{i}].id", button.id),
                "text": check.text(f"buttons[{i}].text", button.text),
            }
        )
    return wire


_TEXT = Call("messages.send_text", "POST", "/send/text")
_MEDIA = Call("messages.send_media", "POST", "/send/media")
_LOCATION = Call("messages.send_location", "POST", "/send-location")
_LIST = Call("messages.send_list", "POST", "/send/list")
_BUTTONS = Call("messages.send_buttons", "POST", "/send/button")


def payload_request(payload: MessagePayload) -> tuple[Call, dict[str, Any]]:
    """The call and checked body for a message; the caller adds who sends it, and to whom."""
    if isinstance(payload, TextMessage):
        body: dict[str, Any] = {"type": "text", "message": check.text("message", payload.message)}
        return _TEXT, _delay(body, payload.delay)
    if isinstance(payload, MediaMessage):
        kind = check.choice("media_type", payload.media_type, MediaType)
        body = {"type": kind.value, "mediaUrl": check.media_url("media_url", payload.media_url)}
        _put(body, "message", "caption", payload.caption)
        _put(body, "fileName", "file_name", payload.file_name)
        _put(body, "mimetype", "mimetype", payload.mimetype)
        return _MEDIA, _delay(body, payload.delay)
    if isinstance(payload, LocationMessage):
        body = {
            "latitude": check.coordinate("latitude", payload.latitude, 90),
            "longitude": check.coordinate("longitude", payload.longitude, 180),
        }
        _put(body, "name", "place_name", payload.place_name)
        _put(body, "address", "address", payload.address)
        return _LOCATION, body
    if isinstance(payload, ListMessage):
        interactive: dict[str, Any] = {
            "type": "list",
            "title": check.text("title", payload.title),
            "text": check.text("text", payload.text),
            "buttonText": check.text("button_text", payload.button_text),
            "sections": _list_sections(payload.sections),
        }
        _put(interactive, "footerText", "footer_text", payload.footer_text)
        body = {"type": "interactive", "interactive": interactive}
        return _LIST, _delay(body, payload.delay)
    if isinstance(payload, ButtonsMessage):
        interactive = {
            "type": "button",
            "text": check.text("text", payload.text),
            "buttons": _reply_buttons(payload.buttons),
        }
        _put(interactive, "title", "title", payload.title)
        _put(interactive, "footerText", "footer_text", payload.footer_text)
        body = {"type": "interactive", "interactive": interactive}
        return _BUTTONS, _delay(body, payload.delay)
    raise InvalidRequestError(
        "a message must be a TextMessage, MediaMessage, LocationMessage, ListMessage or "
        f"ButtonsMessage; got {type(payload).__name__}"
    )


def send_request(
    instance: str, recipient: str, message: MessagePayload
) -> tuple[Call, dict[str, Any]]:
    """The call and the checked body that send ``message`` from ``instance`` to ``recipient``
    (the number normalised): InvalidRequestError for anything the server would refuse."""
    call, body = payload_request(message)
    body["instanceName"] = check.api_name("name", instance)
    body["number"] = check.number("number", recipient)
    return call, body


class Sender:
    """Sends checked messages; ``messages.send_*`` and broadcasts both go through it."""

    def __init__(
        self, executor: Executor, state: Callable[[str], Coroutine[Any, Any, InstanceState]]
    ) -> None:
        self._executor = executor
        self.settings = executor.settings
        #: The instance's connection state (a broadcast checks it after a refusal).
        self.state = state
        #: Every message sent, and its status as receipts arrive.
        self.log = MessageLog()

    def prepare(
        self, instance: str, recipient: str, message: MessagePayload
    ) -> tuple[Call, dict[str, Any]]:
        """The call and the checked body that send ``message`` from ``instance`` to
        ``recipient``."""
        return send_request(instance, recipient, message)

    def send_prepared(
        self,
        call: Call,
        body: dict[str, Any],
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Coroutine[Any, Any, SendResult]:
        return self._send_logged(call, body, timeout, max_retries)

    async def _send_logged(
        self, call: Call, body: dict[str, Any], timeout: float | None, max_retries: int | None
    ) -> SendResult:
        sent = await self._executor.run(
            call, _decode.send_result, body=body, timeout=timeout, max_retries=max_retries
        )
        if sent.message_id:
            self.log.sent(sent.message_id, instance=body["instanceName"], recipient=body["number"])
        return sent


class AsyncMessages:
    """``wa.messages``: send WhatsApp messages from a connected instance.

    ``name`` is the API instance name; ``number`` the recipient, digits with country code
    (``+``, spaces and dashes are dropped). ``delay`` is the typing delay in milliseconds (the
    server picks 3-5 s when omitted).
    """

    def __init__(self, sender: Sender) -> None:
        self._sender = sender

    async def send(
        self,
        name: str,
        number: str,
        payload: MessagePayload,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> SendResult:
        """Send any message payload (what the ``send_*`` methods and broadcasts build)."""
        return await self._send(name, number, payload, timeout, max_retries)

    def _send(
        self,
        name: str,
        number: str,
        payload: MessagePayload,
        timeout: float | None,
        max_retries: int | None,
    ) -> Coroutine[Any, Any, SendResult]:
        sender = self._sender
        call, body = sender.prepare(name, number, payload)
        return sender.send_prepared(call, body, timeout=timeout, max_retries=max_retries)

    async def send_many(
        self,
        specs: Iterable[SendSpec | Mapping[str, Any]] | AsyncIterable[SendSpec | Mapping[str, Any]],
        *,
        campaign: str,
        pace: Pace | None = None,
        journal: str | os.PathLike[str] | None = None,
        opt_out: Iterable[str] | None = None,
        resend_unknown: bool = False,
        on_progress: Callable[[BroadcastProgress], None] | None = None,
    ) -> AsyncGenerator[BroadcastResult, None]:
        """Send one message each to many recipients (a broadcast), streaming a
        :class:`~wachat_async.BroadcastResult` per spec, in completion order.

        Specs (:class:`~wachat_async.SendSpec`: instance, recipient, message, optional key) are
        read lazily. Each instance sends from its own queue at its own ``pace`` (by default one
        message at a time, 5-10 s apart: see :class:`~wachat_async.Pace`); a 429 pauses only that
        instance, and an instance refused as not connected is paused, its messages left for a
        re-run. A key (by default campaign, instance and recipient) repeated in the input, and a
        recipient in ``opt_out``, are reported, not sent. With ``journal`` (the same file as
        ``create_many``'s) every message is on disk before it is sent: a re-run skips what was
        sent and reports, without resending, what may have been (``resend_unknown=True``
        resends those).
        """
        async for result in broadcast(
            self._sender,
            self._sender.settings,
            specs,
            campaign=campaign,
            pace=Pace() if pace is None else pace,
            journal=journal,
            opt_out=opt_out,
            resend_unknown=resend_unknown,
            on_progress=on_progress,
            messages=self._sender.log,
        ):
            yield result

    # -- a message's life ---------------------------------------------------------------------

    def record_receipt(self, receipt: Receipt) -> MessageRecord | None:
        """Move a message's status as a ``messages.update`` receipt says (forward only:
        ``sent`` -> ``delivered`` -> ``read``, or ``failed``); its record, or None when the
        receipt names no message or no known status. Connect a receiver to it::

            WebhookReceiver(secret, handler, receipts=wa.messages.record_receipt)
        """
        return self._sender.log.receive(receipt)

    def status(self, message_id: str) -> MessageRecord | None:
        """What is known of a message this client sent or had a receipt for (the newest
        100,000 are kept), or None."""
        return self._sender.log.get(check.text("message_id", message_id))

    async def wait_for_status(
        self,
        message_id: str,
        status: MessageStatus | str = MessageStatus.READ,
        *,
        timeout: float | None = 60.0,
    ) -> MessageRecord:
        """Return the message's record once its status reached ``status`` or beyond (``read``
        is beyond ``delivered``). Raises :class:`~wachat_async.MessageFailedError` when a
        receipt says it failed, :class:`~wachat_async.WaitTimeoutError` after ``timeout``
        seconds (None: wait for ever). Receipts reach it through :meth:`record_receipt`."""
        return await self._sender.log.wait_for(
            check.text("message_id", message_id),
            status,
            timeout=None if timeout is None else check.seconds("timeout", timeout),
        )

    async def save_receipts(self, journal: str | os.PathLike[str]) -> None:
        """Write the statuses known now to ``journal``'s rows of those messages (a broadcast
        writes those that arrive during its run itself; call this after it, once the
        receipts you wait for arrived). Statuses there move forward only, too."""
        settings = self._sender.settings
        async with await Journal.open(
            journal, api_key=settings.api_key, base_url=settings.base_url
        ) as log:
            self._sender.log.attach(log)
            self._sender.log.detach(log)

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
        """Send a text message."""
        payload = _text_message(message, delay)
        return await self._send(name, number, payload, timeout, max_retries)

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
        payload = MediaMessage(
            media_url,
            media_type=media_type,
            caption=caption,
            file_name=file_name,
            mimetype=mimetype,
            delay=delay,
        )
        return await self._send(name, number, payload, timeout, max_retries)

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
        """Send a location; ``place_name`` is shown above the address."""
        payload = LocationMessage(
            latitude=latitude, longitude=longitude, place_name=place_name, address=address
        )
        return await self._send(name, number, payload, timeout, max_retries)

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
        payload = ListMessage(
            title=title,
            text=text,
            button_text=button_text,
            sections=sections,
            footer_text=footer_text,
            delay=delay,
        )
        return await self._send(name, number, payload, timeout, max_retries)

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
        payload = ButtonsMessage(
            text=text, buttons=buttons, title=title, footer_text=footer_text, delay=delay
        )
        return await self._send(name, number, payload, timeout, max_retries)
