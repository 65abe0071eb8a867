"""Input checks that run before anything is sent; each raises InvalidRequestError saying why."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ._config import is_loopback_host
from .errors import InvalidRequestError

E = TypeVar("E", bound=Enum)

_NUMBER_NOISE = re.compile(r"[\s\-().]")


def text(field: str, value: Any, *, allow_blank: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidRequestError(f"{field} must be a string, got {type(value).__name__}")
    if not allow_blank and not value.strip():
        raise InvalidRequestError(f"{field} must not be empty")
    return value


def instance_name(value: Any) -> str:
    """A friendly name for create: non-blank; surrounding whitespace is dropped."""
    return text("instance_name", value).strip()


def api_name(value: Any) -> str:
    """The API instance name (``t1_..._jakarta_store``) that every call after create takes."""
    return text("instance name", value).strip()


def number(value: Any, field: str = "number") -> str:
    """Digits with country code; spaces, dashes, dots, brackets and a leading ``+`` are dropped."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    raw = text(field, value)
    digits = _NUMBER_NOISE.sub("", raw)
    if digits.startswith("+"):
        digits = digits[1:]
    if not digits.isascii() or not digits.isdigit():
        raise InvalidRequestError(
            f"{field} must be digits with the country code, like 628123456789; got {raw!r}"
        )
    if not 7 <= len(digits) <= 15:
        raise InvalidRequestError(f"{field} must have 7 to 15 digits (E.164); got {raw!r}")
    return digits


def flag(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequestError(f"{field} must be True or False, got {value!r}")
    return value


def choice(field: str, value: Any, enum_cls: type[E]) -> E:
    """A member of ``enum_cls`` given as the member or its wire string; unknown values refused."""
    known: dict[Any, E] = dict(enum_cls._value2member_map_)  # type: ignore[arg-type, unused-ignore]
    member = known.get(value.value if isinstance(value, enum_cls) else value)
    if member is None:
        options = ", ".join(repr(m.value) for m in enum_cls)
        raise InvalidRequestError(f"{field} must be one of {options}; got {value!r}")
    return member


def non_negative_int(field: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRequestError(
            f"{field} must be a non-negative integer (milliseconds), got {value!r}"
        )
    return value


def coordinate(field: str, value: Any, limit: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidRequestError(f"{field} must be a number, got {value!r}")
    if not -limit <= value <= limit:
        raise InvalidRequestError(
            f"{field} must be between -{limit:g} and {limit:g}, got {value!r}"
        )
    return float(value)


def url(field: str, value: Any, *, allow_loopback_http: bool = False) -> str:
    """An https URL (webhooks: the API takes no other); plain http only to loopback, if allowed."""
    raw = text(field, value).strip()
    parts = urlsplit(raw)
    if parts.scheme == "https" and parts.hostname:
        return raw
    if parts.scheme == "http" and allow_loopback_http and is_loopback_host(parts.hostname):
        return raw
    raise InvalidRequestError(f"{field} must be an https:// URL, got {raw!r}")


def media_url(field: str, value: Any) -> str:
    """An http(s) URL that Wachat fetches the media from."""
    raw = text(field, value).strip()
    parts = urlsplit(raw)
    if parts.scheme in ("http", "https") and parts.hostname:
        return raw
    raise InvalidRequestError(f"{field} must be an http(s) URL, got {raw!r}")


def non_empty(field: str, items: Iterable[Any]) -> list[Any]:
    result = list(items)
    if not result:
        raise InvalidRequestError(f"{field} must not be empty")
    return result
