"""The cattrs converter and the body decoders: answers into models.

Into models (JSON camelCase -> snake_case attrs classes), strict where it must be: cattrs
coerces by default (``None`` -> ``"None"``, ``"false"`` -> True), so every primitive is checked
for its JSON type instead (inline, in the code generated per model: see ``register_models``).
Tolerant where it should be: unknown keys are ignored, unknown enum values survive
(:class:`~wachat_async.models.OpenEnum`), ``null`` is accepted wherever a field is optional.
A body that does not fit raises :class:`Undecodable` naming the JSON field; the executor turns
it into a ResponseValidationError with the (redacted) body.

Request bodies go the other way in :mod:`~wachat_async._encode`.

The converter is assembled in named steps (``register_*``), each one idea.
"""

from __future__ import annotations

import email.utils
import time
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from types import NoneType
from typing import Any, TypeVar

import attrs
import cattrs

from . import _json
from ._build import builder, draft_class
from ._reading import RawResponse
from ._request import JSON, PNG
from .models import (
    ALIASES,
    LOCAL,
    CreatedInstance,
    InstanceInfo,
    InstanceState,
    NonEmptyStr,
    OpenEnum,
    QrCode,
    QrImage,
    SendResult,
    Webhook,
)
from .qr import PNG_SIGNATURE

T = TypeVar("T")


class Undecodable(Exception):
    """A body that does not fit what was expected; ``field`` is the JSON path, when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def camel(name: str) -> str:
    """``api_instance_name`` -> ``apiInstanceName``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type, for error messages."""
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


# -- the converter, step by step ------------------------------------------------------------


class Mismatch(Exception):
    """A value that does not fit its field; ``path`` leads to it from the outside in."""

    def __init__(self, problem: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = path

    def within(self, step: str | int) -> Mismatch:
        return Mismatch(self.problem, (step, *self.path))

    @property
    def field(self) -> str | None:
        text = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in self.path)
        return text.lstrip(".") or None


#: JSON primitives and their names in error messages.
_PRIMITIVES: dict[type, str] = {str: "string", int: "integer", bool: "boolean"}


def _exact(kind: type) -> Callable[[Any, Any], Any]:
    """A hook that accepts exactly ``kind`` (JSON decoding yields exact types; this also keeps
    ``true`` out of integers, bool being an int subclass)."""
    label = _PRIMITIVES[kind]

    def hook(value: Any, _: Any) -> Any:
        if type(value) is kind:
            return value
        raise TypeError(f"expected {label}, got {json_type(value)}")

    return hook


def _structure_float(value: Any, _: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected number, got {json_type(value)}")


def _structure_non_empty(value: Any, _: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected string, got {json_type(value)}")
    if not value.strip():
        raise ValueError("expected a non-empty string")
    return value


def register_strict_primitives(conv: cattrs.Converter) -> None:
    """cattrs coerces (``None`` -> ``"None"``, ``"false"`` -> True); these check instead."""
    for kind in _PRIMITIVES:
        conv.register_structure_hook(kind, _exact(kind))
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(NonEmptyStr, _structure_non_empty)


def register_dates(conv: cattrs.Converter) -> None:
    def structure_datetime(value: Any, _: Any) -> datetime:
        if type(value) is not str:
            raise TypeError(f"expected date-time string, got {json_type(value)}")
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("not an ISO 8601 date-time") from None

    conv.register_structure_hook(datetime, structure_datetime)


def register_open_enums(conv: cattrs.Converter) -> None:
    def structure_enum(value: Any, cls: type[OpenEnum]) -> OpenEnum:
        if type(value) is not str:
            raise TypeError(f"expected string, got {json_type(value)}")
        member = cls._value2member_map_.get(value)  # known values without EnumType.__call__
        return cls(value) if member is None else member  # type: ignore[return-value]

    # More specific than ``str`` for singledispatch, so enum fields do not fall to the str hook.
    conv.register_structure_hook(OpenEnum, structure_enum)


def _is_list(type_: Any) -> bool:
    return typing.get_origin(type_) is list


def register_strict_lists(conv: cattrs.Converter) -> None:
    def strict_list(type_: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
        (item_type,) = typing.get_args(type_)
        item = converter.get_structure_hook(item_type)

        def hook(value: Any, _: Any) -> list[Any]:
            if type(value) is not list:  # cattrs would happily iterate a string
                raise TypeError(f"expected array, got {json_type(value)}")
            try:
                return [item(element, item_type) for element in value]
            except (Mismatch, TypeError, ValueError):
                pass
            for index, element in enumerate(value):  # find which element, to say so
                try:
                    item(element, item_type)
                except Mismatch as exc:
                    raise exc.within(index) from None
                except (TypeError, ValueError) as exc:
                    raise Mismatch(str(exc), (index,)) from None
            raise AssertionError("unreachable: an element failed once")  # pragma: no cover

        return hook

    conv.register_structure_hook_factory(_is_list, strict_list)


def _optional_of(type_: Any) -> Any | None:
    """X for ``X | None`` (a single X), else None."""
    args = typing.get_args(type_)
    union = typing.get_origin(type_) in (typing.Union, types.UnionType)
    if union and len(args) == 2 and NoneType in args:
        return args[0] if args[1] is NoneType else args[1]
    return None


def register_optionals(conv: cattrs.Converter) -> None:
    def optional(type_: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
        inner = _optional_of(type_)
        inner_hook = converter.get_structure_hook(inner)

        def hook(value: Any, _: Any) -> Any:
            return None if value is None else inner_hook(value, inner)

        return hook

    conv.register_structure_hook_factory(lambda t: _optional_of(t) is not None, optional)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


_MISSING = _Missing()

#: Inline type checks for the fields that are JSON primitives: (test that fails, label).
_INLINE = {
    str: ("type(v) is not str", "string"),
    int: ("type(v) is not int", "integer"),
    bool: ("type(v) is not bool", "boolean"),
    NonEmptyStr: ("type(v) is not str or not v.strip()", "non-empty string"),
}


def _wrong(key: str, label: str, value: Any) -> Mismatch:
    found = json_type(value)
    if label == "non-empty string" and type(value) is str:
        found = "an empty one"
    return Mismatch(f"expected {label}, got {found}", (key,))


def _model_structure_code(cls: type[Any], converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """Straight-line code that builds ``cls`` from its JSON object: one ``dict.get`` and one
    inline check per primitive field, the converter's hook for the others, each value stored
    into the object as it is read (through the class's :func:`~wachat_async._build.draft_class`).
    cattrs' own generated functions call a hook per field and construct by keyword through the
    frozen ``__init__``; on the hot path that cost more than all the rest of the client's
    handling of a request (``benchmarks/README.md``)."""
    made = draft_class(cls)
    namespace: dict[str, Any] = {
        "cls": cls,
        "draft": made,
        "new": object.__new__,
        "Mapping": Mapping,
        "MISSING": _MISSING,
        "Mismatch": Mismatch,
        "wrong": _wrong,
        "json_type": json_type,
    }
    lines = [
        "def structure(o, _):",
        "  if type(o) is not dict and not isinstance(o, Mapping):",
        "    raise Mismatch(f'expected object, got {json_type(o)}')",
    ]
    if made is not None:
        lines.append("  obj = new(draft)")
    values: list[tuple[str, str]] = []
    attrs.resolve_types(cls)  # annotations are strings in these modules
    for i, field in enumerate(attrs.fields(cls)):
        if not field.init:
            continue
        if field.name == "raw":
            value = "o"
        elif LOCAL in field.metadata:
            namespace[f"d{i}"] = field.default
            value = f"d{i}"
        else:
            _field_code(lines, namespace, converter, i, field)
            value = "v"
        if made is not None:
            lines.append(f"  obj.{field.name} = {value}")
        else:
            lines.append(f"  {field.name} = {value}")
            values.append((field.name, field.name))
    if made is not None:
        lines += ["  obj.__class__ = cls", "  return obj"]
    else:
        lines.append(f"  return cls({', '.join(f'{k}={v}' for k, v in values)})")
    exec(
        compile("\n".join(lines), f"<wachat_async structure {cls.__qualname__}>", "exec"), namespace
    )
    structure: Callable[[Any, Any], Any] = namespace["structure"]
    return structure


def _field_code(
    lines: list[str],
    namespace: dict[str, Any],
    converter: cattrs.Converter,
    i: int,
    field: attrs.Attribute[Any],
) -> None:
    """Lines that leave in ``v`` the field's value, read from its key (or an alias)."""
    key = camel(field.name)
    inner = _optional_of(field.type)
    nullable = inner is not None
    target = inner if nullable else field.type
    aliases = field.metadata.get(ALIASES, ())
    if nullable and field.default is None:  # absent and null mean the same: None
        lines.append(f"  v = o.get({key!r})")
        lines += [f"  if v is None: v = o.get({alias!r})" for alias in aliases]
        branch, test = "if", "v is not None and "
    else:
        lines.append(f"  v = o.get({key!r}, MISSING)")
        lines += [f"  if v is None or v is MISSING: v = o.get({alias!r}, v)" for alias in aliases]
        if field.default is attrs.NOTHING:
            missing = f"raise Mismatch('required field is missing', ({key!r},))"
        elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            namespace[f"f{i}"] = field.default.factory  # type: ignore[union-attr]
            missing = f"v = f{i}()"
        else:
            namespace[f"d{i}"] = field.default
            missing = f"v = d{i}"
        lines.append(f"  if v is MISSING: {missing}")
        branch, test = "elif", "v is not None and " if nullable else ""
    if target in _INLINE:
        check, label = _INLINE[target]
        lines.append(f"  {branch} {test}{check}: raise wrong({key!r}, {label!r}, v)")
        return
    if isinstance(target, type) and issubclass(target, OpenEnum):
        # Known values straight from the enum's own map; others through its hook.
        namespace[f"m{i}"] = target._value2member_map_
        lines += [
            f"  {branch} {test}type(v) is str and v in m{i}: v = m{i}[v]",
        ]
        branch = "elif"
    namespace[f"h{i}"] = converter.get_structure_hook(target)
    namespace[f"t{i}"] = target
    lines += [
        f"  {branch} {test}True:",
        f"    try: v = h{i}(v, t{i})",
        f"    except Mismatch as exc: raise exc.within({key!r}) from None",
        "    except (TypeError, ValueError) as exc:",
        f"      raise Mismatch(str(exc), ({key!r},)) from None",
    ]


def register_models(conv: cattrs.Converter) -> None:
    """Response models: camelCase keys, aliases for repeated fields, ``raw`` kept."""
    conv.register_structure_hook_factory(attrs.has, lambda cls: _model_structure_code(cls, conv))


def build_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    register_strict_primitives(conv)
    register_dates(conv)
    register_open_enums(conv)
    register_strict_lists(conv)
    register_optionals(conv)
    register_models(conv)
    return conv


converter = build_converter()


# -- structuring with the failing field named ------------------------------------------------

_hooks: dict[Any, Callable[[Any, Any], Any]] = {}


def structure(data: Any, cls: type[T], *, prefix: str = "") -> T:
    """``data`` as ``cls``, or :class:`Undecodable` naming the failing field."""
    hook = _hooks.get(cls)
    if hook is None:  # looked up once per type, not dispatched per call
        hook = _hooks[cls] = converter.get_structure_hook(cls)
    try:
        result: T = hook(data, cls)
        return result
    except Mismatch as exc:
        mismatch = exc
    except (TypeError, ValueError) as exc:
        mismatch = Mismatch(str(exc))
    field = mismatch.field
    if prefix:
        field = f"{prefix}.{field}" if field else prefix
    where = f" at {field!r}" if field else ""
    raise Undecodable(f"Unexpected response from Wachat{where}: {mismatch.problem}", field)


# -- body decoders: RawResponse -> value -----------------------------------------------------


def json_body(raw: RawResponse) -> Any:
    """The decoded JSON of a success response."""
    content_type = raw.content_type
    if content_type != JSON and not content_type.endswith("+json"):
        raise Undecodable(f"Expected a JSON response, got {content_type or 'no content type'!r}")
    try:
        return _json.loads(raw.body)
    except (_json.JSONDecodeError, UnicodeDecodeError) as exc:
        problem = str(exc)
    raise Undecodable(f"Response is not valid JSON: {problem}")


def json_object(raw: RawResponse) -> dict[str, Any]:
    """The decoded JSON object of a success response."""
    data = json_body(raw)
    if type(data) is dict:
        return data
    raise Undecodable(f"Expected a JSON object, got {json_type(data)}")


def member(data: dict[str, Any], key: str, cls: type[T]) -> T:
    if key not in data:
        raise Undecodable(f"Response has no {key!r} field", key)
    return structure(data[key], cls, prefix=key)


def created(raw: RawResponse) -> CreatedInstance:
    return structure(json_object(raw), CreatedInstance)


def png(raw: RawResponse) -> bytes:
    if raw.content_type != PNG or not raw.body.startswith(PNG_SIGNATURE):
        raise Undecodable(
            f"Expected a PNG image, got {raw.content_type or 'no content type'!r} "
            f"({len(raw.body)} bytes)"
        )
    return raw.body


def image(raw: RawResponse) -> bytes:
    if not raw.content_type.startswith("image/") or not raw.body:
        raise Undecodable(f"Expected an image, got {raw.content_type or 'no content type'!r}")
    return raw.body


def qr_image(raw: RawResponse) -> QrImage:
    picture = png(raw)
    api_name = raw.headers.get("X-Api-Instance-Name")
    if not api_name:
        raise Undecodable(
            "QR image response has no X-Api-Instance-Name header", "X-Api-Instance-Name"
        )
    return QrImage(
        png=picture, instance_name=raw.headers.get("X-Instance-Name"), api_instance_name=api_name
    )


_QR_KEYS = ("base64", "code", "pairingCode")


def qr(raw: RawResponse) -> QrCode:
    """The QR response is undocumented: accept the QR object bare or under a few wrappers."""
    queue: list[tuple[str, Any]] = [("", json_object(raw))]
    for _ in range(3):  # breadth-first, three levels deep at most
        for path, node in queue:
            if isinstance(node, dict) and any(k in node for k in _QR_KEYS):
                return structure(node, QrCode, prefix=path)
        queue = [
            (f"{path}.{key}".lstrip("."), value)
            for path, node in queue
            if isinstance(node, dict)
            for key, value in node.items()
            if isinstance(value, dict)
        ]
    raise Undecodable(
        "No QR code in the response (looked for base64, code or pairingCode)", "qrcode"
    )


def state(raw: RawResponse) -> InstanceState:
    data = json_object(raw)
    instance = data.get("instance")
    flat: Any = instance
    if (
        type(instance) is not dict
        or instance.get("state") is None
        or (instance.get("apiInstanceName") is None and instance.get("internalName") is None)
    ):
        # data.instance.instanceName is the API name there; instance.instanceName the friendly
        # one. Fill what ``instance`` lacks from ``data.instance``.
        nested = data.get("data")
        nested = nested.get("instance") if isinstance(nested, dict) else None
        flat = dict(instance) if isinstance(instance, dict) else {}
        if isinstance(nested, dict):
            if flat.get("apiInstanceName") is None and flat.get("internalName") is None:
                flat["apiInstanceName"] = nested.get("instanceName")
            if flat.get("state") is None:
                flat["state"] = nested.get("state")
    result = structure(flat, InstanceState, prefix="instance")
    object.__setattr__(result, "raw", data)  # the whole body, not the instance's part
    return result


def instances_and_clock(raw: RawResponse) -> tuple[list[InstanceInfo], float]:
    """The instance list, and the server's clock minus ours (from ``Date``; 0 when absent)."""
    infos = member(json_object(raw), "instances", list[InstanceInfo])
    date = raw.headers.get("Date")
    skew = 0.0
    if date:
        try:
            skew = email.utils.parsedate_to_datetime(date).timestamp() - time.time()
        except (TypeError, ValueError):
            skew = 0.0
    return infos, skew


def webhooks(raw: RawResponse) -> list[Webhook]:
    return member(json_object(raw), "webhooks", list[Webhook])


def webhook(raw: RawResponse) -> Webhook:
    return member(json_object(raw), "webhook", Webhook)


def _message_id(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    for path in (("data", "id"), ("key", "id"), ("data", "key", "id"), ("messageId",), ("id",)):
        node: Any = data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if type(node) is str and node:
            return node
    return None


#: Built once per send: the generated builder saves a frozen ``__init__``'s per-field
#: ``object.__setattr__`` (about 350 ns, which showed in the send's instruction count).
_send_result = builder(SendResult)


def send_result(raw: RawResponse) -> SendResult:
    """The success body is undocumented: keep it all; read what is typed as expected."""
    try:
        data: Any = _json.loads(raw.body) if raw.body else None
    except (_json.JSONDecodeError, UnicodeDecodeError):
        data = raw.text()
    success = message = None
    if type(data) is dict:
        success = data.get("success")
        success = success if type(success) is bool else None
        message = data.get("message")
        message = message if type(message) is str else None
    return _send_result(raw.status, success, message, _message_id(data), data)


def nothing(raw: RawResponse) -> None:
    return None


def any_body(raw: RawResponse) -> Any:
    """JSON decoded, anything else as bytes (the ``request()`` escape hatch)."""
    content_type = raw.content_type
    if content_type == JSON or content_type.endswith("+json"):
        return json_body(raw)
    return raw.body
