"""What ``help()``, pydoc and IDEs show of the clients: their operation groups and methods.

Both clients keep their groups (``instances``, ``messages``, ``webhooks``) as instance
attributes, which ``help()`` never sees. A :class:`Group` on the class makes each one visible:
``help(Wachat.messages)`` documents the group's class, method by method with signatures, and
:func:`group_index` lists every group's methods in the client's own docstring.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from typing import Any, Generic, TypeVar, overload

G = TypeVar("G")

#: The width ``group_index`` wraps to, pydoc's own margin included.
_WIDTH = 88


class Group(Generic[G]):
    """A client's group of operations, declared on the client class: read on the class it is
    the group's class (for ``help()``); a client sets the group itself in ``__init__``, which
    then hides this (it is a non-data descriptor, so a client's lookups cost nothing more)."""

    def __init__(self, cls: type[G]) -> None:
        self.cls = cls
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, client: None, owner: type) -> type[G]: ...
    @overload
    def __get__(self, client: object, owner: type) -> G: ...
    def __get__(self, client: object | None, owner: type) -> type[G] | G:
        if client is None:
            return self.cls
        raise AttributeError(f"{owner.__name__}.{self.name} is set up in __init__")


def public_methods(cls: type) -> dict[str, Any]:
    """The public functions of ``cls`` (inherited ones too), by name, in definition order."""
    methods: dict[str, Any] = {}
    for klass in reversed(cls.__mro__[:-1]):  # without object
        for name, member in vars(klass).items():
            if not name.startswith("_") and inspect.isfunction(member):
                methods[name] = member
    return methods


def group_index(client: type) -> str:
    """A section for ``client``'s docstring: each group, and each of its methods with its
    parameters (types and docs are one ``help(Client.group)`` away)."""
    lines = [f"Operations, by group (``help({client.__name__}.messages)`` documents each one):"]
    for name, attribute in vars(client).items():
        if not isinstance(attribute, Group):
            continue
        lines += ["", *textwrap.wrap(_summary(attribute.cls) or name, _WIDTH)]
        for method_name, method in public_methods(attribute.cls).items():
            parameters = list(inspect.signature(method).parameters.values())[1:]  # no self
            bare = [p.replace(annotation=inspect.Parameter.empty) for p in parameters]
            call = f"{method_name}{inspect.Signature(bare)}"
            lines += textwrap.wrap(
                call, _WIDTH, initial_indent="    ", subsequent_indent="        "
            )
    return "\n".join(lines)


def _summary(cls: type) -> str:
    """The first sentence of ``cls``'s docstring."""
    paragraph = " ".join((inspect.getdoc(cls) or "").split("\n\n", 1)[0].split())
    return paragraph.split(". ", 1)[0].rstrip(".") + "."


def with_group_index(client: type) -> None:
    """Append :func:`group_index` to ``client``'s docstring."""
    doc = inspect.cleandoc(client.__doc__ or "")
    client.__doc__ = f"{doc}\n\n{group_index(client)}\n"


_ASYNC_SPELLINGS = [
    (re.compile(r"\bawait\s+"), ""),
    (re.compile(r"\basync\s+(with|for)\b"), r"\1"),
    (re.compile(r"\bAsyncWachat\("), "Wachat("),
]


def blocking_doc(doc: str | None) -> str | None:
    """An async method's docstring as its blocking form reads: examples without ``await``,
    ``async with`` and ``async for``."""
    if doc is None:
        return None
    for pattern, replacement in _ASYNC_SPELLINGS:
        doc = pattern.sub(replacement, doc)
    return doc
