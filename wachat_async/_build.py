"""Frozen attrs instances built at the cost of mutable ones, for the hot path.

A frozen attrs class sets every field through ``object.__setattr__`` in its ``__init__``: three
to four times the cost of a plain slot store, and for the models a request builds (a create's
answer is two of them) that was most of the client's cost over raw aiohttp. :func:`builder`
makes the same object another way: it fills an instance of a *draft* class (the same slots, no
frozen ``__setattr__``) with plain stores, then gives it its real class. The result is exactly
what ``cls(*args)`` returns: same type, fields, equality, hash, repr and immutability.

Only for classes whose ``__init__`` does nothing else (no converters, validators or
``__attrs_post_init__``), slotted ones without a base of their own (Python swaps the class of
an object only between matching layouts); otherwise the builder is the class itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

T = TypeVar("T")

_drafts: dict[type, type | None] = {}


def draft_class(cls: type) -> type | None:
    """A plain class with ``cls``'s layout (its slots, or just a ``__dict__``), into whose
    instances ``cls``'s fields can be stored before they are given ``cls`` as their class; None
    when ``cls``'s ``__init__`` does more than store its fields, or Python will not swap."""
    if cls in _drafts:
        return _drafts[cls]
    fields = attrs.fields(cls)
    plain = all(
        f.converter is None and f.validator is None and f.alias == f.name for f in fields
    ) and not hasattr(cls, "__attrs_post_init__")
    found: type | None = None
    if plain:
        body = {"__slots__": cls.__dict__["__slots__"]} if "__slots__" in cls.__dict__ else {}
        candidate = type(f"_{cls.__name__}Draft", (), body)
        try:
            probe: Any = object.__new__(candidate)
            probe.__class__ = cls
        except TypeError:  # layouts Python will not swap (a weakref slot, another interpreter)
            pass
        else:
            found = candidate
    _drafts[cls] = found
    return found


def builder(cls: type[T]) -> Callable[..., T]:
    """A function taking ``cls``'s init fields positionally, in order, and returning an
    instance of ``cls``."""
    made = draft_class(cls)
    if made is None:
        return cls
    names = [f.name for f in attrs.fields(cls) if f.init]  # type: ignore[arg-type]
    lines = [f"def build({', '.join(names)}):", "  o = new(draft)"]
    lines += [f"  o.{name} = {name}" for name in names]
    lines += ["  o.__class__ = cls", "  return o"]
    namespace: dict[str, Any] = {"new": object.__new__, "draft": made, "cls": cls}
    exec(compile("\n".join(lines), f"<wachat_async build {cls.__qualname__}>", "exec"), namespace)
    build: Callable[..., T] = namespace["build"]
    return build
