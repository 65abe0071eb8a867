"""The one cattrs converter: JSON (camelCase) into models (snake_case).

Strict where it must be: cattrs coerces by default (``None`` -> ``"None"``, ``"false"`` -> True),
so every primitive has a hook that checks the JSON type instead. Tolerant where it should be:
unknown keys are ignored, unknown enum values survive (see :class:`~wachat_async.models.OpenEnum`),
``null`` is accepted wherever a field is optional. Every failure becomes a
:class:`~wachat_async.errors.ResponseValidationError` naming the JSON field.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from types import NoneType
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.cols import is_sequence, list_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, override

from . import _json
from ._http import RawResponse
from .errors import ResponseValidationError
from .models import ALIASES, LOCAL, NonEmptyStr, OpenEnum

T = TypeVar("T")

_SNIPPET = 2000


def camel(name: str) -> str:
    """``api_instance_name`` -> ``apiInstanceName``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


#: JSON primitives and their names in error messages.
_PRIMITIVES: dict[type, str] = {str: "string", int: "integer", bool: "boolean"}


def _exact(kind: type, *, nullable: bool = False) -> Callable[[Any, Any], Any]:
    """A hook that accepts exactly ``kind`` (JSON decoding yields exact types; this also keeps
    ``true`` out of integers, bool being an int subclass), and None when ``nullable``."""
    label = _PRIMITIVES[kind]

    def hook(value: Any, _: Any) -> Any:
        if type(value) is kind or (nullable and value is None):
            return value
        raise TypeError(f"expected {label}, got {_json_type(value)}")

    return hook


def _structure_float(value: Any, _: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected number, got {_json_type(value)}")


def _structure_enum(value: Any, cls: type[OpenEnum]) -> OpenEnum:
    if type(value) is not str:
        raise TypeError(f"expected string, got {_json_type(value)}")
    member = cls._value2member_map_.get(value)  # known values without EnumType.__call__
    return cls(value) if member is None else member  # type: ignore[return-value]


def _structure_non_empty(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected string, got {_json_type(value)}")
    if not value.strip():
        raise ValueError("expected a non-empty string")
    return value


def _structure_datetime(value: Any, _: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected date-time string, got {_json_type(value)}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date-time: {value[:40]!r}") from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _build_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    for kind in _PRIMITIVES:
        conv.register_structure_hook(kind, _exact(kind))
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(datetime, _structure_datetime)
    # More specific than ``str`` for singledispatch, so enum fields do not fall to the str hook.
    conv.register_structure_hook(OpenEnum, _structure_enum)
    conv.register_structure_hook(NonEmptyStr, _structure_non_empty)

    def strict_list(type_: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
        base = list_structure_factory(type_, converter)

        def hook(value: Any, t: Any) -> Any:
            if not isinstance(value, list):  # cattrs would happily iterate a string
                raise TypeError(f"expected array, got {_json_type(value)}")
            return base(value, t)

        return hook

    conv.register_structure_hook_factory(is_sequence, strict_list)

    def optional(type_: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
        # cattrs' generic Optional handling is the slowest step of a create response; for
        # ``X | None`` a None check in front of X's own hook does the same job.
        (inner,) = [arg for arg in typing.get_args(type_) if arg is not NoneType]
        if inner in _PRIMITIVES:
            return _exact(inner, nullable=True)
        inner_hook = converter.get_structure_hook(inner)

        def hook(value: Any, _: Any) -> Any:
            return None if value is None else inner_hook(value, inner)

        return hook

    conv.register_structure_hook_factory(_is_optional, optional)

    def model_hook(cls: type[Any]) -> Callable[[Any, Any], Any]:
        fields = attrs.fields(cls)
        names = {f.name for f in fields}
        overrides = {
            f.name: override(omit=True)
            if f.name == "raw" or LOCAL in f.metadata
            else override(rename=camel(f.name))
            for f in fields
        }
        structure = make_dict_structure_fn(cls, conv, **overrides)  # type: ignore[arg-type]
        aliases = [(camel(f.name), f.metadata[ALIASES]) for f in fields if ALIASES in f.metadata]
        keep_raw = "raw" in names

        def hook(data: Any, _: Any) -> Any:
            if type(data) is not dict and not isinstance(data, Mapping):
                raise TypeError(f"expected object, got {_json_type(data)}")
            source = data
            if aliases:
                data = _fill_aliases(data, aliases)
            obj = structure(data, cls)
            if keep_raw:
                object.__setattr__(obj, "raw", source)  # frozen: set once, right after building
            return obj

        return hook

    conv.register_structure_hook_factory(attrs.has, model_hook)
    return conv


def _is_optional(type_: Any) -> bool:
    """``X | None`` for a single X."""
    args = typing.get_args(type_)
    return (
        typing.get_origin(type_) in (typing.Union, types.UnionType)
        and len(args) == 2
        and NoneType in args
    )


def _fill_aliases(
    data: Mapping[str, Any], aliases: list[tuple[str, tuple[str, ...]]]
) -> Mapping[str, Any]:
    filled: dict[str, Any] | None = None
    for key, others in aliases:
        if data.get(key) is None:
            for other in others:
                if data.get(other) is not None:
                    filled = filled if filled is not None else dict(data)
                    filled[key] = data[other]
                    break
    return data if filled is None else filled


converter = _build_converter()


def _locate(exc: BaseException, path: list[str]) -> tuple[str | None, BaseException]:
    """Follow cattrs' exception groups down to the first leaf and the JSON path to it."""
    if isinstance(exc, BaseValidationError):
        for sub in exc.exceptions:
            step = None
            for note in getattr(sub, "__notes__", ()):
                if isinstance(note, AttributeValidationNote):
                    step = "." + camel(note.name)
                elif isinstance(note, IterableValidationNote):
                    step = f"[{note.index}]"
            return _locate(sub, [*path, step] if step else path)
    return ("".join(path).lstrip(".") or None), exc


def structure(
    data: Any, cls: type[T], *, body: bytes | str = b"", status_code: int = 200, prefix: str = ""
) -> T:
    """``data`` as ``cls``, or a :class:`ResponseValidationError` naming the failing field."""
    try:
        return converter.structure(data, cls)
    except Exception as exc:
        field, leaf = _locate(exc, [])
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        where = f" at {field!r}" if field else ""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        raise ResponseValidationError(
            f"Unexpected response from Wachat{where}: {leaf}",
            field=field,
            body=text[:_SNIPPET],
            status_code=status_code,
        ) from exc


def json_body(raw: RawResponse) -> Any:
    """The decoded JSON of a success response, or a :class:`ResponseValidationError`."""
    if raw.content_type != "application/json" and not raw.content_type.endswith("+json"):
        raise ResponseValidationError(
            f"Expected a JSON response, got {raw.content_type or 'no content type'!r}",
            field=None,
            body=raw.text()[:_SNIPPET],
            status_code=raw.status,
        )
    try:
        return _json.loads(raw.body)
    except (_json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResponseValidationError(
            f"Response is not valid JSON: {exc}",
            field=None,
            body=raw.text()[:_SNIPPET],
            status_code=raw.status,
        ) from None


def json_object(raw: RawResponse) -> dict[str, Any]:
    data = json_body(raw)
    if not isinstance(data, dict):
        raise ResponseValidationError(
            f"Expected a JSON object, got {_json_type(data)}",
            field=None,
            body=raw.text()[:_SNIPPET],
            status_code=raw.status,
        )
    return data


def decode(raw: RawResponse, cls: type[T], *, key: str | None = None) -> T:
    """Structure a JSON response (or its member ``key``) as ``cls``."""
    data = json_object(raw)
    if key is not None:
        if key not in data:
            raise ResponseValidationError(
                f"Response has no {key!r} field",
                field=key,
                body=raw.text()[:_SNIPPET],
                status_code=raw.status,
            )
        return structure(data[key], cls, body=raw.body, status_code=raw.status, prefix=key)
    return structure(data, cls, body=raw.body, status_code=raw.status)
