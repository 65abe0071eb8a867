"""Router: handlers registered by decorator, chosen by filters, first match in registration order.

::

    router = Router()

    @router.message(F.text("menu", ignore_case=True))
    async def menu(message: Message) -> None:
        await message.reply("...")

    @router.fallback
    async def anything_else(message: Message, conversation: Conversation) -> None: ...

**Dispatch.** A message goes through the entries of the root router in the order they were
registered (a handler, or a sub-router added by :meth:`Router.include` at that point, which
goes through its own entries the same way): the first handler whose filter accepts it runs,
and only that one. When nothing matched inside a router that has a fallback, the fallback runs.
Messages sent from the instance's own phone (``from_me``) are skipped unless a handler's filter
mentions ``F.from_me``.

**What a handler gets.** It declares parameters, by type or by name: ``Message``
(``message``), the event ``MessageReceived`` (``event``), the client ``AsyncWachat``
(``client``), the chat's ``Conversation`` (``conversation``); an error handler also
``Exception`` (``error``). Anything else is refused when the handler is registered.

**Middlewares.** ``outer`` ones wrap every message that reaches the router, before the filters
(a middleware that does not call ``call_next`` drops the message); inner ones wrap only the
handler chosen. Both are ``async def mw(message, call_next)``.

**Errors.** A handler (or inner middleware) that raises goes to the nearest router's error
handler; without one the bot logs it. Either way the delivery stays acknowledged and the chat
is released.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Collection, Iterator
from typing import Any, TypeVar

from ..errors import InvalidRequestError
from ..webhooks.events import MessageReceived
from .chat import Conversation, Message
from .filters import Filter

__all__ = ["Middleware", "Router"]

H = TypeVar("H", bound=Callable[..., Awaitable[None]])
CallNext = Callable[[], Awaitable[None]]
Middleware = Callable[[Message, CallNext], Awaitable[None]]


def _client_type() -> type:
    from ..client import AsyncWachat

    return AsyncWachat


#: What a handler may ask for, by parameter name.
_BY_NAME = {
    "message": "message",
    "event": "event",
    "client": "client",
    "conversation": "conversation",
}


def _kind_of(annotation: Any, name: str, *, error_allowed: bool) -> str | None:
    if isinstance(annotation, type):
        if issubclass(annotation, Message):
            return "message"
        if issubclass(annotation, MessageReceived):
            return "event"
        if issubclass(annotation, Conversation):
            return "conversation"
        if issubclass(annotation, _client_type()):
            return "client"
        if error_allowed and issubclass(annotation, BaseException):
            return "error"
    if error_allowed and name in ("error", "exc", "exception"):
        return "error"
    return _BY_NAME.get(name)


def _injection(
    fn: Callable[..., Any], *, what: str, error_allowed: bool = False
) -> tuple[str, ...]:
    """Checked once, when registered: the parameter kinds ``fn`` declares, in order."""
    if not inspect.iscoroutinefunction(fn):
        raise InvalidRequestError(f"{what} {fn!r} must be an async function (async def)")
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    kinds = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        kind = _kind_of(hints.get(param.name), param.name, error_allowed=error_allowed)
        if kind is None:
            if param.default is not param.empty:
                continue
            offered = "Message, MessageReceived, AsyncWachat, Conversation"
            if error_allowed:
                offered += ", Exception"
            raise InvalidRequestError(
                f"{what} {getattr(fn, '__qualname__', fn)!r} asks for {param.name!r}, which the "
                f"router cannot give (by type or name: {offered})"
            )
        kinds.append(kind)
    return tuple(kinds)


def _arguments(kinds: tuple[str, ...], message: Message, error: BaseException | None) -> list[Any]:
    values = {
        "message": message,
        "event": message.event,
        "client": message.client,
        "conversation": message.conversation,
        "error": error,
    }
    return [values[k] for k in kinds]


def _always(message: Message) -> bool:
    return True


class _Handler:
    __slots__ = ("callback", "filter", "kinds", "test", "wants_from_me")

    def __init__(self, callback: Callable[..., Awaitable[None]], filter: Filter | None) -> None:
        self.callback = callback
        self.filter = filter
        self.kinds = _injection(callback, what="handler")
        #: The filter's test itself (dispatch calls it for every message: no indirection).
        self.test = _always if filter is None else filter.test
        self.wants_from_me = filter is not None and filter.wants_from_me


#: Kinds of dispatch steps: (kind, test, wants_from_me, target).
_HANDLER, _ROUTER, _LOOKUP = 0, 1, 2
_Step = tuple[int, Callable[[Message], bool], bool, Any]


class Router:
    """Handlers and sub-routers, tried in registration order. See the module docstring."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self._entries: list[_Handler | Router] = []
        #: ``_entries`` as dispatch reads them, flat tuples: a handler (its test, whether it
        #: wants ``from_me``), a sub-router, and for a run of consecutive ``F.text(...)``
        #: handlers one ``{text: handler}`` lookup holding the first registered for each text
        #: (so the first match still wins, in one step instead of one per handler).
        self._plan: list[_Step] = []
        self._outer: list[Middleware] = []
        self._inner: list[Middleware] = []
        self._fallback: _Handler | None = None
        self._error: tuple[Callable[..., Awaitable[None]], tuple[str, ...]] | None = None
        self._parent: Router | None = None

    def __repr__(self) -> str:
        return f"Router({self.name!r}, handlers={sum(1 for _ in self._handlers())})"

    # -- registration --------------------------------------------------------------------------

    def message(self, *filters: Filter) -> Callable[[H], H]:
        """Register a handler for messages all ``filters`` accept (none: every message)."""
        combined: Filter | None = None
        for f in filters:
            if not isinstance(f, Filter):
                raise InvalidRequestError(
                    f"router.message takes filters (F.text(...), ...), got {f!r}"
                )
            combined = f if combined is None else combined & f

        def register(fn: H) -> H:
            handler = _Handler(fn, combined)
            self._entries.append(handler)
            texts = combined.exact_texts if combined is not None else None
            if texts is None:
                self._plan.append((_HANDLER, handler.test, handler.wants_from_me, handler))
                return fn
            if not self._plan or self._plan[-1][0] != _LOOKUP:
                self._plan.append((_LOOKUP, _always, False, {}))
            lookup: dict[str, _Handler] = self._plan[-1][3]
            for text in texts:
                lookup.setdefault(text, handler)
            return fn

        return register

    def fallback(self, fn: H) -> H:
        """Register the handler for messages nothing in this router matched."""
        if self._fallback is not None:
            raise InvalidRequestError(f"{self!r} has a fallback already")
        self._fallback = _Handler(fn, None)
        return fn

    def error(self, fn: H) -> H:
        """Register the handler for exceptions raised by handlers in this router (and in
        sub-routers without an error handler of their own)."""
        if self._error is not None:
            raise InvalidRequestError(f"{self!r} has an error handler already")
        self._error = (fn, _injection(fn, what="error handler", error_allowed=True))
        return fn

    def outer_middleware(self, mw: Middleware) -> Middleware:
        """Wrap every message reaching this router, before its filters run."""
        self._outer.append(self._checked_middleware(mw))
        return mw

    def middleware(self, mw: Middleware) -> Middleware:
        """Wrap the handlers of this router (and its sub-routers) that were chosen."""
        self._inner.append(self._checked_middleware(mw))
        return mw

    @staticmethod
    def _checked_middleware(mw: Middleware) -> Middleware:
        if not inspect.iscoroutinefunction(mw):
            raise InvalidRequestError(f"middleware {mw!r} must be async def mw(message, call_next)")
        return mw

    def include(self, router: Router) -> Router:
        """Add ``router``'s handlers here, at this point of the registration order."""
        if not isinstance(router, Router):
            raise InvalidRequestError(f"include takes a Router, got {router!r}")
        ancestor: Router | None = self
        while ancestor is not None:
            if ancestor is router:
                raise InvalidRequestError(f"{router!r} cannot be included inside itself")
            ancestor = ancestor._parent
        if router._parent is not None:
            raise InvalidRequestError(f"{router!r} is included in another router already")
        router._parent = self
        self._entries.append(router)
        self._plan.append((_ROUTER, _always, False, router))
        return router

    # -- build-time checks ---------------------------------------------------------------------

    def _handlers(self) -> Iterator[_Handler]:
        for entry in self._entries:
            if isinstance(entry, Router):
                yield from entry._handlers()
            else:
                yield entry
        if self._fallback is not None:
            yield self._fallback

    def check(self, states: Collection[str]) -> None:
        """Refuse filters naming a state not in ``states`` (a typo would never match)."""
        for handler in self._handlers():
            unknown = handler.filter.states - set(states) if handler.filter else set()
            if unknown:
                known = ", ".join(sorted(states)) or "none declared"
                raise InvalidRequestError(
                    f"handler {handler.callback.__qualname__!r} filters on unknown state(s) "
                    f"{', '.join(sorted(unknown))} (the bot's states: {known})"
                )

    # -- dispatch ------------------------------------------------------------------------------

    async def dispatch(self, message: Message) -> bool:
        """Route ``message``; True when a handler (or a fallback, or an error handler) took it."""
        return await self._dispatch_within(message, ())

    async def _route(self, message: Message, inner: tuple[Middleware, ...]) -> bool:
        inner = inner + tuple(self._inner) if self._inner else inner
        from_me = message.event.from_me
        try:
            for kind, test, wants_from_me, target in self._plan:
                if kind == _HANDLER:
                    if (not from_me or wants_from_me) and test(message):
                        await self._run(target, message, inner)
                        return True
                elif kind == _LOOKUP:
                    if not from_me and (found := target.get(message.stripped)) is not None:
                        await self._run(found, message, inner)
                        return True
                elif await target._dispatch_within(message, inner):
                    return True
            if self._fallback is not None:
                await self._run(self._fallback, message, inner)
                return True
            return False
        except Exception as exc:
            if self._error is None:
                raise
            callback, kinds = self._error
            await callback(*_arguments(kinds, message, exc))
            return True

    async def _dispatch_within(self, message: Message, inner: tuple[Middleware, ...]) -> bool:
        if not self._outer:
            return await self._route(message, inner)
        handled = False

        async def innermost() -> None:
            nonlocal handled
            handled = await self._route(message, inner)

        await _chain(self._outer, message, innermost)()
        return handled

    @staticmethod
    async def _run(handler: _Handler, message: Message, inner: tuple[Middleware, ...]) -> None:
        async def call() -> None:
            await handler.callback(*_arguments(handler.kinds, message, None))

        await (_chain(inner, message, call)() if inner else call())


def _chain(middlewares: Collection[Middleware], message: Message, last: CallNext) -> CallNext:
    call_next = last
    for mw in reversed(list(middlewares)):
        call_next = _wrap(mw, message, call_next)
    return call_next


def _wrap(mw: Middleware, message: Message, call_next: CallNext) -> CallNext:
    async def step() -> None:
        await mw(message, call_next)

    return step
