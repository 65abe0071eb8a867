"""Methods whose parameters are written once, as an attrs class.

``@arguments(CreateSpecCall)`` gives a method exactly the parameters of ``CreateSpecCall(...)``
(names, defaults, types) for mypy and at run time (``inspect.signature``, ``help()``, IDE
hovers, Jupyter's popup), and hands the method one built, checked value instead of a dozen
arguments. The create fields and the client options are each listed once this way.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import attrs

P = ParamSpec("P")
S = TypeVar("S")
O = TypeVar("O")  # noqa: E741 - the owner: the class the method belongs to
R = TypeVar("R")


def signature(fn: Callable[..., Any]) -> inspect.Signature:
    """``fn``'s signature with its annotations evaluated (they are strings in this package)."""
    if isinstance(fn, type) and attrs.has(fn):
        return _attrs_signature(fn)
    try:
        return inspect.signature(fn, eval_str=True)
    except NameError:  # an annotation that only exists for type checkers
        return inspect.signature(fn)


def _attrs_signature(cls: type) -> inspect.Signature:
    """An attrs class's ``__init__`` signature, each annotation resolved where its field was
    declared (a subclass's module may not know its bases' names)."""
    attrs.resolve_types(cls)
    fields = {f.alias: f for f in attrs.fields(cls)}
    parameters = []
    for parameter in inspect.signature(cls).parameters.values():
        field = fields[parameter.name]
        annotation: Any = field.type
        if field.converter is not None:  # the parameter takes what the converter takes
            hints = typing.get_type_hints(field.converter)
            annotation = next(iter(v for k, v in hints.items() if k != "return"), annotation)
        parameters.append(parameter.replace(annotation=annotation))
    return inspect.Signature(parameters, return_annotation=None)


def arguments(
    spec: Callable[P, S],
) -> Callable[[Callable[[O, S], R]], Callable[Concatenate[O, P], R]]:
    """Decorate ``method(self, value: S)`` into ``method(self, *<spec's parameters>)``."""

    def decorate(method: Callable[[O, S], R]) -> Callable[Concatenate[O, P], R]:
        own = signature(method)
        returns = own.return_annotation
        wrapper: Any
        if typing.get_origin(returns) is collections.abc.Coroutine:
            # A method that returns its coroutine (one frame less per call) becomes an
            # ``async def``: its arguments are checked when it is awaited, like any other
            # coroutine's, and tools see a coroutine function.
            returns = typing.get_args(returns)[2]

            async def wrapper(self: O, /, *args: P.args, **kwargs: P.kwargs) -> Any:
                return await method(self, spec(*args, **kwargs))  # type: ignore[misc]

        else:

            def wrapper(self: O, /, *args: P.args, **kwargs: P.kwargs) -> R:
                return method(self, spec(*args, **kwargs))

        functools.update_wrapper(wrapper, method)
        wrapper.__signature__ = own.replace(
            parameters=[
                next(iter(own.parameters.values())).replace(kind=inspect.Parameter.POSITIONAL_ONLY),
                *signature(spec).parameters.values(),
            ],
            return_annotation=returns,
        )
        typed: Callable[Concatenate[O, P], R] = wrapper
        return typed

    return decorate
