"""One chat as a handler sees it: the :class:`Message` (replies through its instance) and the
chat's :class:`Conversation` (where it is, what it has said, asking it a question)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import _validate as check
from ..errors import InvalidRequestError
from ..models import (
    ButtonsMessage,
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
from ..webhooks.events import ButtonReply, ListReply, MessageKind, MessageReceived
from .filters import Filter
from .storage import Storage

if TYPE_CHECKING:
    from ..client import AsyncWachat

__all__ = ["Conversation", "Message"]

#: Waits for the chat's next message matching a filter (the bot provides it).
WaitFor = Callable[["Conversation", Filter, float], Awaitable["Message"]]


class Message:
    """The message a handler handles: the typed ``event``, its ``conversation``, and replies
    sent from the instance it arrived on to the chat it came from (``delay``: the typing delay
    in milliseconds, as in ``wa.messages``)."""

    __slots__ = (
        "_folded",
        "client",
        "conversation",
        "event",
        "instance",
        "kind",
        "sender",
        "stripped",
        "text",
    )

    def __init__(
        self, event: MessageReceived, client: AsyncWachat, conversation: Conversation
    ) -> None:
        self.event = event
        self.client = client
        self.conversation = conversation
        # Read once here: fifty filters read them again for every message.
        #: The text, a caption, or the title of the chosen row or button.
        self.text = text = event.text
        #: :attr:`text` without surrounding spaces (what text filters compare).
        self.stripped = None if text is None else text.strip()
        #: The sender's number (digits).
        self.sender = event.sender_number
        #: The API name of the instance it arrived on.
        self.instance = event.instance
        self.kind: MessageKind = event.kind
        self._folded: str | None = None

    def __repr__(self) -> str:
        return (
            f"Message(instance={self.instance!r}, sender={self.sender!r}, kind={self.kind.value}, "
            f"text={self.text!r})"
        )

    @property
    def folded(self) -> str | None:
        """:attr:`stripped`, case-folded (what case-insensitive filters compare)."""
        if self._folded is None and self.stripped is not None:
            self._folded = self.stripped.casefold()
        return self._folded

    @property
    def selected_id(self) -> str | None:
        """The id of the chosen list row or pressed button (None for other messages)."""
        event = self.event
        return event.selected_id if isinstance(event, ListReply | ButtonReply) else None

    async def reply(self, text: str, *, delay: int | None = None) -> SendResult:
        """Answer with a text message."""
        return await self._send(TextMessage(text, delay=delay))

    async def reply_media(
        self,
        media_url: str,
        *,
        media_type: MediaType | str,
        caption: str | None = None,
        file_name: str | None = None,
        mimetype: str | None = None,
        delay: int | None = None,
    ) -> SendResult:
        """Answer with an image, video, document or audio fetched from ``media_url``."""
        return await self._send(
            MediaMessage(
                media_url,
                media_type=media_type,
                caption=caption,
                file_name=file_name,
                mimetype=mimetype,
                delay=delay,
            )
        )

    async def reply_list(
        self,
        *,
        title: str,
        text: str,
        button_text: str,
        sections: Sequence[ListSection],
        footer_text: str | None = None,
        delay: int | None = None,
    ) -> SendResult:
        """Answer with a list menu; the customer's choice comes back as a ``ListReply``."""
        return await self._send(
            ListMessage(
                title=title,
                text=text,
                button_text=button_text,
                sections=sections,
                footer_text=footer_text,
                delay=delay,
            )
        )

    async def reply_buttons(
        self,
        *,
        text: str,
        buttons: Sequence[ReplyButton | str],
        title: str | None = None,
        footer_text: str | None = None,
        delay: int | None = None,
    ) -> SendResult:
        """Answer with up to three quick-reply buttons (experimental, as ``send_buttons``)."""
        return await self._send(
            ButtonsMessage(
                text=text, buttons=buttons, title=title, footer_text=footer_text, delay=delay
            )
        )

    async def reply_location(
        self,
        *,
        latitude: float,
        longitude: float,
        place_name: str | None = None,
        address: str | None = None,
    ) -> SendResult:
        """Answer with a location (the API takes no typing delay for locations)."""
        return await self._send(
            LocationMessage(
                latitude=latitude, longitude=longitude, place_name=place_name, address=address
            )
        )

    async def _send(self, payload: MessagePayload) -> SendResult:
        event = self.event
        if event.is_group:
            raise InvalidRequestError(
                "the API sends to numbers, not to groups: a group message cannot be replied to"
            )
        if event.instance is None or event.sender_number is None:
            raise InvalidRequestError(
                "this message names no instance or sender number, so it cannot be replied to"
            )
        await self.conversation._answering()
        return await self.client.messages.send(event.instance, event.sender_number, payload)


class Conversation:
    """One chat's state: ``state`` (a name the bot declared, or None) and ``data`` (JSON
    values). Changes are written to the storage at once, so a restart or another replica sees
    them; a state times out after the bot's ``state_timeout`` (or the ``timeout`` given to
    :meth:`set_state`), and the chat starts over."""

    __slots__ = (
        "_data",
        "_states",
        "_storage",
        "_timeout",
        "_wait_for",
        "began_sending",
        "chat",
        "state",
    )

    def __init__(
        self,
        chat: str,
        storage: Storage,
        *,
        states: Collection[str],
        timeout: float | None,
        wait_for: WaitFor,
        snapshot: str | None,
    ) -> None:
        self.chat = chat
        self._storage = storage
        self._states = states
        self._timeout = timeout
        self._wait_for = wait_for
        loaded: dict[str, Any] = json.loads(snapshot) if snapshot else {}
        self.state: str | None = loaded.get("state")
        self._data: dict[str, Any] = loaded.get("data", {})
        #: Whether the message being handled has begun sending a reply (recorded in the
        #: storage, so after a crash it is not handled again: no duplicate answer).
        self.began_sending = False

    def __repr__(self) -> str:
        return f"Conversation(chat={self.chat!r}, state={self.state!r})"

    @property
    def data(self) -> Mapping[str, Any]:
        """What handlers stored for this chat (change it with :meth:`update`)."""
        return self._data

    async def set_state(
        self, state: str | None, *, timeout: float | None = None, **data: Any
    ) -> None:
        """Move to ``state`` (None: no state) and merge ``data``; refused for a state the bot
        did not declare."""
        if state is not None and state not in self._states:
            known = ", ".join(sorted(self._states)) or "none declared"
            raise InvalidRequestError(f"unknown state {state!r} (the bot's states: {known})")
        self.state = state
        self._data.update(data)
        await self._save(timeout)

    async def update(self, **data: Any) -> None:
        """Merge ``data`` into :attr:`data`, keeping the state."""
        self._data.update(data)
        await self._save(None)

    async def clear(self) -> None:
        """Forget the state and the data."""
        self.state = None
        self._data = {}
        await self._storage.save(self.chat, None, None)

    async def wait_for(self, filter: Filter, *, timeout: float) -> Message:
        """The chat's next message that ``filter`` accepts, from inside a handler (the chat
        stays held meanwhile; other messages of the chat go through the router). Raises
        :class:`TimeoutError` after ``timeout`` seconds and leaves nothing behind."""
        seconds = check.seconds("timeout", timeout)
        return await self._wait_for(self, filter, seconds)

    async def _answering(self) -> None:
        """Record, before the first reply to the message being handled, that it is answering."""
        if not self.began_sending:
            await self._storage.sending(self.chat)
            self.began_sending = True

    async def _save(self, timeout: float | None) -> None:
        ttl = timeout if timeout is not None else self._timeout
        if self.state is None and not self._data:
            await self._storage.save(self.chat, None, None)
            return
        snapshot = {"state": self.state, "data": self._data, "at": time.time()}
        try:
            text = json.dumps(snapshot)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"conversation data must be JSON values: {exc}") from None
        await self._storage.save(self.chat, text, ttl)
