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

from ._build import builder

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


def _direct_wrapper(spec: Any, method: Callable[..., Any]) -> Callable[..., Any] | None:
    """For a plain attrs class (see :func:`~wachat_async._build.builder`): a wrapper with the
    spec's own parameter list, so Python binds the arguments, that builds the spec directly.
    None when ``spec`` is not such a class."""
    build = builder(spec) if attrs.has(spec) else spec
    if build is spec:
        return None
    fields = [f for f in attrs.fields(spec) if f.init]
    if any(isinstance(f.default, attrs.Factory) for f in fields):  # type: ignore[arg-type]
        return None
    namespace: dict[str, Any] = {"method": method, "build": build}
    positional: list[str] = []
    keyword: list[str] = []
    for i, field in enumerate(fields):
        text = field.name
        if field.default is not attrs.NOTHING:
            namespace[f"d{i}"] = field.default
            text += f"=d{i}"
        (keyword if field.kw_only else positional).append(text)
    params = ", ".join(["self", "/", *positional, *(["*", *keyword] if keyword else [])])
    names = ", ".join(f.name for f in fields)
    source = f"def wrapper({params}):\n  return method(self, build({names}))"
    exec(compile(source, f"<wachat_async arguments {spec.__qualname__}>", "exec"), namespace)
    wrapper: Callable[..., Any] = namespace["wrapper"]
    return wrapper


def arguments(
    spec: Callable[P, S],
) -> Callable[[Callable[[O, S], R]], Callable[Concatenate[O, P], R]]:
    """Decorate ``method(self, value: S)`` into ``method(self, *<spec's parameters>)``."""

    def decorate(method: Callable[[O, S], R]) -> Callable[Concatenate[O, P], R]:
        wrapper: Any = _direct_wrapper(spec, method)
        if wrapper is None:

            def wrapper(self: O, /, *args: P.args, **kwargs: P.kwargs) -> R:
                return method(self, spec(*args, **kwargs))

        functools.update_wrapper(wrapper, method)
        own = signature(method)
        returns = own.return_annotation
        # A method that returns its coroutine directly (one frame less per call) reads, to
        # people and tools, as the ``async def`` it stands for.
        is_coroutine = typing.get_origin(returns) is collections.abc.Coroutine
        if is_coroutine:
            returns = typing.get_args(returns)[2]
        wrapper.__signature__ = own.replace(
            parameters=[
                next(iter(own.parameters.values())).replace(kind=inspect.Parameter.POSITIONAL_ONLY),
                *signature(spec).parameters.values(),
            ],
            return_annotation=returns,
        )
        if is_coroutine and hasattr(inspect, "markcoroutinefunction"):
            inspect.markcoroutinefunction(wrapper)  # Python 3.12+
        typed: Callable[Concatenate[O, P], R] = wrapper
        return typed

    return decorate
