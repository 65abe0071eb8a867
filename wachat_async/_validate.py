"""Input checks that run before anything is sent. Each raises InvalidRequestError naming the
parameter as the caller wrote it (``reject_calls``, ``timeout``, ``sections[0].rows[1].title``)
and saying what would be accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ._security import is_loopback_host
from .errors import InvalidRequestError

E = TypeVar("E", bound=Enum)

#: What people write between the digits of a number (dropped by :func:`number`).
NUMBER_NOISE = re.compile(r"[\s\-().]")


def _kind(value: Any) -> str:
    return type(value).__name__


def encodable(field: str, value: str) -> str:
    """``value``, if it can go on the wire as UTF-8 (lone surrogates, from bad JSON, cannot)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRequestError(
                f"{field} contains text that cannot be sent (not valid Unicode: "
                f"{value[exc.start : exc.end]!a} at position {exc.start})"
            ) from None
    return value


def text(field: str, value: Any, *, allow_blank: bool = False) -> str:
    if type(value) is not str and not isinstance(value, str):
        raise InvalidRequestError(f"{field} must be a string, got {_kind(value)}")
    if not allow_blank and not value.strip():
        raise InvalidRequestError(f"{field} must not be empty")
    return value if value.isascii() else encodable(field, value)


def instance_name(field: str, value: Any) -> str:
    """A friendly name for create: non-blank; surrounding whitespace is dropped."""
    return text(field, value).strip()


def api_name(field: str, value: Any) -> str:
    """The API instance name (``t1_..._jakarta_store``) that every call after create takes."""
    return text(field, value).strip()


def number(field: str, value: Any) -> str:
    """Digits with country code; spaces, dashes, dots, brackets and a leading ``+`` are dropped.

    No country code starts with 0, so a number that does is refused, never guessed at: a
    national number (``0812...``) needs its country, and ``0049...`` written with the ``00``
    call prefix would otherwise be a second recipient beside ``+49...``."""
    if (
        type(value) is str
        and value.isdigit()
        and value.isascii()
        and 7 <= len(value) <= 15
        and value[0] != "0"
    ):
        return value  # already clean: the common case, without the regex
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    raw = text(field, value)
    digits = NUMBER_NOISE.sub("", raw)
    if digits.startswith("+"):
        digits = digits[1:]
    if not digits.isascii() or not digits.isdigit():
        raise InvalidRequestError(
            f"{field} must be digits with the country code, like 628123456789; got {raw!r}"
        )
    if digits.startswith("00"):
        raise InvalidRequestError(
            f"{field} must start with the country code (E.164); got {raw!r}: 00 is a call "
            f"prefix, write +{digits[2:]}"
        )
    if digits.startswith("0"):
        raise InvalidRequestError(
            f"{field} must start with the country code (E.164); got {raw!r}: a leading 0 is "
            "a national prefix, write the country code instead of it (62812... for 0812... "
            "in Indonesia)"
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


def non_negative_int(field: str, value: Any, unit: str = "") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        what = f" ({unit})" if unit else ""
        raise InvalidRequestError(f"{field} must be a non-negative integer{what}, got {value!r}")
    return value


def positive_int(field: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequestError(f"{field} must be a positive integer, got {value!r}")
    return value


def seconds(field: str, value: Any, *, allow_zero: bool = False) -> float:
    """A finite, positive (or, with ``allow_zero``, non-negative) number of seconds."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        least = "zero or more" if allow_zero else "more than zero"
        raise InvalidRequestError(
            f"{field} must be a finite number of seconds, {least}; got {value!r}"
        )
    return float(value)


def seconds_or_zero(field: str, value: Any) -> float:
    return seconds(field, value, allow_zero=True)


def attribute(
    check: Callable[[str, Any], object], *, optional: bool = False
) -> Callable[[Any, Any, Any], None]:
    """An attrs validator: ``check`` under the attribute's name (None passes when optional)."""

    def validate(instance: Any, field: Any, value: Any) -> None:
        if not (optional and value is None):
            check(field.name, value)

    return validate


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
    if isinstance(items, str | bytes):
        raise InvalidRequestError(f"{field} must be a list, got {_kind(items)}")
    result = list(items)
    if not result:
        raise InvalidRequestError(f"{field} must not be empty")
    return result


#: What a JSON body may hold, as the standard library and orjson both encode it the same way.
_JSON_SCALARS = (str, int, float, bool, type(None))


def json_value(field: str, value: Any) -> Any:
    """``value``, if it is plain JSON that can go on the wire: mappings with string keys,
    lists, strings that encode as UTF-8, finite numbers, booleans and None. What is wrong is
    named by its path (``json['a'][1]``), before anything is sent."""
    if isinstance(value, str):
        return value if value.isascii() else encodable(field, value)
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN or Infinity: one encoder would send null, the other invalid JSON.
        raise InvalidRequestError(f"{field} must be a finite number, got {value!r}")
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidRequestError(f"{field} keys must be strings, got {key!r}")
            encodable(f"{field}[{key!a}] (its name)", key)
            json_value(f"{field}[{key!r}]", item)
        return value
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            json_value(f"{field}[{index}]", item)
        return value
    raise InvalidRequestError(
        f"{field} is a {_kind(value)}, which JSON cannot carry (use dicts, lists, strings, "
        "numbers, booleans and None)"
    )


def optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    """``check`` that lets None through."""

    def checked(field: str, value: Any) -> Any:
        return None if value is None else check(field, value)

    return checked
