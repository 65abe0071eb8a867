"""Request bodies: a :class:`~wachat_async.models.CreateSpec` into the create's wire body, only
the fields given, camelCase, each checked by the check in its metadata under its Python name
(so a message speaks the caller's words). Answers come back through
:mod:`~wachat_async._decode`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from ._decode import camel
from .errors import InvalidRequestError
from .models import WIRE, CreateSpec, Integration

_META = ("meta_token", "meta_business_id", "meta_phone_number_id")


def _wire_body(spec_type: type[Any]) -> Callable[[Any], dict[str, Any]]:
    """``spec -> wire dict`` for an attrs spec class whose fields carry their check (``WIRE``)."""
    overrides = {
        f.name: override(
            rename=camel(f.name),
            omit_if_default=True,
            unstruct_hook=functools.partial(f.metadata[WIRE], f.name),
        )
        for f in attrs.fields(spec_type)
    }
    fn: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(
        spec_type,
        cattrs.Converter(),
        **overrides,  # type: ignore[arg-type]
    )
    return fn


_create_wire = _wire_body(CreateSpec)


def create_body(spec: CreateSpec) -> dict[str, Any]:
    """The checked wire body of a create: only the fields given."""
    if not isinstance(spec, CreateSpec):
        raise InvalidRequestError(f"expected a CreateSpec, got {type(spec).__name__}")
    body = _create_wire(spec)
    if body.get("integration") == Integration.WHATSAPP_BUSINESS:  # a str enum: plain == works
        missing = [name for name in _META if getattr(spec, name) is None]
        if missing:
            raise InvalidRequestError(
                "WHATSAPP-BUSINESS instances need meta_token, meta_business_id and "
                f"meta_phone_number_id; missing: {', '.join(missing)}"
            )
    return body
