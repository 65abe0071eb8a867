"""What the API gives back: frozen, slotted attrs classes and open enums.

Models that stand for a whole response or list item keep the JSON they were built from in
``raw`` (not part of ``repr`` or equality), so fields the API adds later stay reachable.
Where the API repeats itself (``state``/``status``, ``profilePictureUrl``/``profilePicUrl``,
``apiInstanceName``/``internalName``) a model exposes one attribute and reads either key.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NewType, Self

import attrs

from . import _validate as check
from . import qr as _qr
from .errors import InvalidRequestError

logger = logging.getLogger("wachat_async")

__all__ = [
    "ButtonsMessage",
    "ConnectionState",
    "CreateSpec",
    "CreatedInstance",
    "Instance",
    "InstanceInfo",
    "InstanceRef",
    "InstanceState",
    "Integration",
    "ListMessage",
    "ListRow",
    "ListSection",
    "LocationMessage",
    "MediaMessage",
    "MediaType",
    "MessagePayload",
    "QrCode",
    "QrImage",
    "ReplyButton",
    "SendResult",
    "TextMessage",
    "Webhook",
    "WebhookEventType",
]

#: Field metadata key: other JSON keys that carry the same value when the main key is absent.
ALIASES = "wachat_aliases"
#: Field metadata key: the field is set by the client, never read from the JSON.
LOCAL = "wachat_local"
#: Field metadata key: on a request spec, ``check(field_name, value) -> wire value``.
WIRE = "wachat_wire"

#: A string that must not be empty: the API names every later call takes.
NonEmptyStr = NewType("NonEmptyStr", str)


def _aliases(*keys: str) -> dict[str, tuple[str, ...]]:
    return {ALIASES: keys}


_unknown_seen: set[tuple[str, str]] = set()


class OpenEnum(enum.StrEnum):
    """A string enum that keeps values it does not know instead of failing.

    ``ConnectionState("pairing")`` returns a member whose ``value`` is ``"pairing"``; it is not
    equal to any declared member. A warning is logged once per unknown value.
    """

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if not isinstance(value, str):
            return None
        member = str.__new__(cls, value)
        member._name_ = value.upper().replace("-", "_").replace(".", "_")
        member._value_ = value
        if (cls.__name__, value) not in _unknown_seen:
            _unknown_seen.add((cls.__name__, value))
            logger.warning("unknown %s value %r kept as is", cls.__name__, value)
        return member

    @property
    def is_known(self) -> bool:
        return self._value_ in type(self)._value2member_map_


class Integration(OpenEnum):
    WHATSAPP_BAILEYS = "WHATSAPP-BAILEYS"
    WHATSAPP_BUSINESS = "WHATSAPP-BUSINESS"


class ConnectionState(OpenEnum):
    OPEN = "open"
    CONNECTING = "connecting"
    CLOSE = "close"


class MediaType(OpenEnum):
    IMAGE = "image"
    VIDEO = "video"
    DOCUMENT = "document"
    AUDIO = "audio"


class WebhookEventType(OpenEnum):
    ALL = "*"
    MESSAGES_UPSERT = "messages.upsert"
    MESSAGES_UPDATE = "messages.update"
    CONTACTS_UPDATE = "contacts.update"
    CHATS_UPDATE = "chats.update"
    QRCODE_UPDATED = "qrcode.updated"
    CONNECTION_UPDATE = "connection.update"


@attrs.frozen(weakref_slot=False)
class QrCode:
    """A QR code to scan with WhatsApp. Codes expire: ask ``instances.qr(name)`` for a fresh one."""

    pairing_code: str | None = None
    #: The raw QR payload (what the QR encodes).
    code: str | None = None
    #: ``data:image/png;base64,...`` URI, usable as an ``<img src>``.
    base64: str | None = attrs.field(default=None, repr=False)
    image_url: str | None = None
    live_url: str | None = None
    #: How many codes have been issued for this instance so far.
    count: int | None = None

    def png_bytes(self) -> bytes:
        """The PNG image, decoded from ``base64``."""
        if self.base64 is None:
            raise ValueError("This QR code carries no image (qrcode.base64 is null).")
        return _qr.decode_data_uri(self.base64)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the PNG image to ``path``."""
        _qr.save_png(self.png_bytes(), path)

    def _repr_png_(self) -> bytes | None:
        """Jupyter shows the QR itself."""
        return None if self.base64 is None else self.png_bytes()

    def _repr_html_(self) -> str | None:
        return None if self.base64 is None else _qr.html_img(self.base64)


@attrs.frozen(weakref_slot=False)
class Instance:
    """An instance as the create call describes it."""

    #: Unique name for every later API call (``t1_mq9r2jov_jakarta_store``).
    api_instance_name: NonEmptyStr = attrs.field(metadata=_aliases("internalName"))
    id: int | None = None
    #: The friendly name you chose (shown in the Wachat dashboard).
    instance_name: str | None = None
    display_name: str | None = None
    #: Same value as ``api_instance_name``, as the API returns it.
    internal_name: str | None = None
    number: str | None = None
    integration: Integration | None = None


@attrs.frozen(weakref_slot=False)
class CreatedInstance:
    """Result of ``instances.create``."""

    instance: Instance
    #: None for WHATSAPP-BUSINESS, or when the QR could not be fetched (see ``qr_error``).
    qrcode: QrCode | None = None
    #: Set when the instance was created but its QR code could not be fetched.
    qr_error: str | None = None
    success: bool = True
    #: True when the create's response was lost and the instance was found by reconciliation.
    reconciled: bool = attrs.field(default=False, metadata={LOCAL: True})
    #: API names of the duplicates deleted after this create was resent: a lost earlier
    #: attempt that landed late made them (never a connected one; see the README).
    duplicates_deleted: tuple[str, ...] = attrs.field(default=(), metadata={LOCAL: True})
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen(weakref_slot=False)
class QrImage:
    """Result of ``instances.create_qr_image``: the QR as PNG bytes and the two names."""

    png: bytes = attrs.field(repr=False)
    instance_name: str | None
    api_instance_name: str

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the PNG image to ``path``."""
        _qr.save_png(self.png, path)

    def _repr_png_(self) -> bytes:
        """Jupyter shows the QR itself."""
        return self.png


@attrs.frozen(weakref_slot=False)
class InstanceState:
    """Result of ``instances.state``: the connection state plus profile data when connected."""

    api_instance_name: NonEmptyStr = attrs.field(metadata=_aliases("internalName"))
    state: ConnectionState
    instance_name: str | None = None
    profile_name: str | None = None
    profile_picture_url: str | None = attrs.field(default=None, metadata=_aliases("profilePicUrl"))
    number: str | None = None
    owner: str | None = None
    integration: Integration | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def is_connected(self) -> bool:
        return self.state is ConnectionState.OPEN


@attrs.frozen(weakref_slot=False)
class InstanceInfo:
    """One item of ``instances.list``."""

    api_instance_name: NonEmptyStr = attrs.field(metadata=_aliases("internalName"))
    id: int | None = None
    instance_name: str | None = None
    display_name: str | None = None
    internal_name: str | None = None
    state: ConnectionState | None = attrs.field(default=None, metadata=_aliases("status"))
    is_connected: bool | None = None
    number: str | None = None
    profile_name: str | None = None
    profile_picture_url: str | None = attrs.field(default=None, metadata=_aliases("profilePicUrl"))
    owner: str | None = None
    integration: Integration | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen(weakref_slot=False)
class InstanceRef:
    """The instance a webhook is bound to."""

    api_instance_name: str | None = attrs.field(default=None, metadata=_aliases("internalName"))
    instance_name: str | None = None
    display_name: str | None = None
    internal_name: str | None = None


@attrs.frozen(weakref_slot=False)
class Webhook:
    id: int | None = None
    name: str | None = None
    url: str | None = None
    events: list[WebhookEventType] = attrs.field(factory=list)
    enabled: bool | None = None
    #: Masked by the API when listing (``whsec_••••abcdef``); never shown in ``repr``.
    secret: str | None = attrs.field(default=None, repr=False)
    #: None when the webhook covers every instance.
    instance: InstanceRef | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen(weakref_slot=False)
class SendResult:
    """A message accepted (queued) for delivery. The body is undocumented: ``raw`` keeps it."""

    status_code: int
    success: bool | None = None
    message: str | None = None
    #: The WhatsApp message id, when the answer carries one (``data.id``, ``key.id``, ``id``).
    message_id: str | None = None
    raw: Any = attrs.field(default=None, repr=False, eq=False)


@attrs.frozen
class ListRow:
    title: str
    description: str | None = None
    row_id: str | None = None


def _row_tuple(rows: Iterable[ListRow]) -> tuple[ListRow, ...]:
    return tuple(rows)


@attrs.frozen
class ListSection:
    title: str
    rows: tuple[ListRow, ...] = attrs.field(converter=_row_tuple)


@attrs.frozen
class ReplyButton:
    """A quick-reply button for ``messages.send_buttons`` (experimental)."""

    id: str
    text: str


# -- what a message says (sends and broadcasts) ----------------------------------------------


@attrs.frozen(weakref_slot=False)
class TextMessage:
    """A text message (``messages.send_text``)."""

    message: str
    #: Typing delay in milliseconds; the server picks 3-5 s when omitted.
    delay: int | None = attrs.field(default=None, kw_only=True)


@attrs.frozen(weakref_slot=False)
class MediaMessage:
    """An image, video, document or audio, fetched by Wachat from ``media_url``."""

    media_url: str
    media_type: MediaType | str = attrs.field(kw_only=True)
    caption: str | None = attrs.field(default=None, kw_only=True)
    file_name: str | None = attrs.field(default=None, kw_only=True)
    mimetype: str | None = attrs.field(default=None, kw_only=True)
    delay: int | None = attrs.field(default=None, kw_only=True)


@attrs.frozen(kw_only=True, weakref_slot=False)
class LocationMessage:
    """A pin on the map (``/send-location``)."""

    latitude: float
    longitude: float
    place_name: str | None = None
    address: str | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class ListMessage:
    """A list menu: a button that opens ``sections`` of selectable rows."""

    title: str
    text: str
    button_text: str
    sections: Sequence[ListSection]
    footer_text: str | None = None
    delay: int | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class ButtonsMessage:
    """Up to three quick-reply buttons (experimental: the API has not published the shape)."""

    text: str
    buttons: Sequence[ReplyButton | str]
    title: str | None = None
    footer_text: str | None = None
    delay: int | None = None


MessagePayload = TextMessage | MediaMessage | LocationMessage | ListMessage | ButtonsMessage


def _checked_by(check: Any) -> dict[str, Any]:
    """Field metadata: ``check(name, value)`` turns the field into its wire value when sent."""
    return {WIRE: check}


def _integration(field: str, value: Any) -> str:
    return check.choice(field, value, Integration).value


@attrs.frozen(slots=False)
class CreateSpec:
    """Everything ``instances.create`` accepts, as one value (a CSV row, a bulk item).

    The one list of create fields: ``create``, ``create_qr_image``, ``create_many`` and the CSV
    columns of ``wachat provision`` all take exactly these. Nothing is checked when a spec is
    built; the checks run when it is sent, and name the field as written here.
    """

    #: The friendly name you choose; Wachat derives the API name from it.
    instance_name: str = attrs.field(metadata=_checked_by(check.instance_name))
    #: The WhatsApp number, digits with country code (``+``, spaces and dashes are dropped).
    number: str | None = attrs.field(default=None, kw_only=True, metadata=_checked_by(check.number))
    #: ``WHATSAPP-BAILEYS`` (QR code, the default) or ``WHATSAPP-BUSINESS`` (Meta Cloud API).
    integration: Integration | str | None = attrs.field(
        default=None, kw_only=True, metadata=_checked_by(_integration)
    )
    reject_calls: bool | None = attrs.field(
        default=None, kw_only=True, metadata=_checked_by(check.flag)
    )
    ignore_groups: bool | None = attrs.field(
        default=None, kw_only=True, metadata=_checked_by(check.flag)
    )
    always_online: bool | None = attrs.field(
        default=None, kw_only=True, metadata=_checked_by(check.flag)
    )
    read_messages: bool | None = attrs.field(
        default=None, kw_only=True, metadata=_checked_by(check.flag)
    )
    read_status: bool | None = attrs.field(
        default=None, kw_only=True, metadata=_checked_by(check.flag)
    )
    #: WHATSAPP-BUSINESS only, like the next two (all three are required there).
    meta_token: str | None = attrs.field(
        default=None, kw_only=True, repr=False, metadata=_checked_by(check.text)
    )
    meta_business_id: str | None = attrs.field(
        default=None, kw_only=True, metadata=_checked_by(check.text)
    )
    meta_phone_number_id: str | None = attrs.field(
        default=None, kw_only=True, metadata=_checked_by(check.text)
    )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Self:
        """Build from a mapping with these field names; unknown or missing keys are an error."""
        known = {f.name for f in attrs.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidRequestError(
                f"unknown create field(s): {', '.join(sorted(map(str, unknown)))}; "
                f"the fields are {', '.join(f.name for f in attrs.fields(cls))}"
            )
        if "instance_name" not in data:
            raise InvalidRequestError("instance_name is required")
        return cls(**data)
