"""The create fields, as :class:`~wachat_async.CreateSpec` lists them (never a list written
here): the CSV columns of ``provision`` and the options of ``instances create``."""

from __future__ import annotations

import typing

import attrs

from ..models import CreateSpec

attrs.resolve_types(CreateSpec)

#: Every create field, in CreateSpec's order (``instance_name`` first).
CREATE_FIELDS: tuple[str, ...] = tuple(f.name for f in attrs.fields(CreateSpec))
#: The yes/no fields (typed ``bool | None``).
BOOLEAN_FIELDS = frozenset(
    f.name for f in attrs.fields(CreateSpec) if bool in typing.get_args(f.type)
)
