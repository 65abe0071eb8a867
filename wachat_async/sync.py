"""Wachat: the synchronous facade. A thin bridge over AsyncWachat, never a second implementation.

Each :class:`Wachat` owns a private :class:`~wachat_async.AsyncWachat` whose session lives on
the process's loop thread (:mod:`~wachat_async._loop_thread`: start, fork, exit, Ctrl-C, the
deadlock guard), and every call is handed over to it. One function, :func:`_bridge`, makes a
blocking method of an async one; each blocking group bridges every public method of its async
group, so a method added there is here too. What the facade itself adds:

- many threads may call one client at once;
- after ``os.fork()`` a client inherited from the parent rebuilds its session on the child's
  loop thread (the parent's sockets are left alone);
- ``close()`` (idempotent), the context manager and garbage collection close the session; at
  interpreter exit the loop thread closes what is left.
"""

from __future__ import annotations

import collections.abc
import functools
import os
import types
import typing
import weakref
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Self, TypeVar, overload

from . import _loop_thread
from ._config import OptionChanges, Settings, options_of
from ._help import Group, blocking_doc, public_methods, with_group_index
from ._loop_thread import EventLoopBlockingWarning, LoopThread
from ._signatures import arguments, signature
from .client import AsyncWachat
from .resources.instances import AsyncInstances
from .resources.messages import AsyncMessages
from .resources.webhooks import AsyncWebhooks

if TYPE_CHECKING:
    from ._receipts import MessageRecord, Receipt

__all__ = ["EventLoopBlockingWarning", "Wachat"]

P = ParamSpec("P")
R = TypeVar("R")
#: What a method run in the caller's thread (a URL builder) returns. A bound no awaitable meets
#: keeps the overloads of _bridge apart: mypy types a call matching two of them as Any when the
#: method has an ``Any`` among its parameter types.
Plain = TypeVar("Plain", bound=str | bytes | int | float | None)

_ASYNC_ITERATORS = (
    collections.abc.AsyncGenerator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
)


@overload
def _bridge(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Any, P], R]: ...
@overload
def _bridge(
    method: Callable[Concatenate[Any, P], AsyncIterator[R]],
) -> Callable[Concatenate[Any, P], Iterator[R]]: ...
@overload
def _bridge(
    method: Callable[Concatenate[Any, P], Plain],
) -> Callable[Concatenate[Any, P], Plain]: ...
def _bridge(method: Callable[..., Any]) -> Callable[..., Any]:
    """The blocking form of ``method`` (of an async group or client): a plain function with its
    name, its docstring in blocking words and its real signature (for ``help()``, IDEs and
    ``inspect``), async return types made blocking (``AsyncIterator[X]`` becomes
    ``Iterator[X]``). A coroutine is run on the loop thread, an async iterator stepped there
    item by item, and anything else (a URL builder) returned as is."""

    def blocking(facade: _Facade, /, *args: Any, **kwargs: Any) -> Any:
        target, loop_thread = facade._bridge_target()
        outcome = method(target, *args, **kwargs)
        if type(outcome) is types.CoroutineType:  # the exact type: the cheapest test
            return loop_thread.run(outcome)
        if isinstance(outcome, collections.abc.AsyncIterator):
            return _iterate(loop_thread, outcome)
        return outcome

    functools.update_wrapper(blocking, method)
    blocking.__doc__ = blocking_doc(method.__doc__)
    sig = signature(method)
    returns = sig.return_annotation
    origin = typing.get_origin(returns)
    if origin in _ASYNC_ITERATORS:
        item: Any = typing.get_args(returns)[0]
        returns = Iterator[item]
    elif origin is collections.abc.Coroutine:
        returns = typing.get_args(returns)[2]
    blocking.__signature__ = sig.replace(return_annotation=returns)  # type: ignore[attr-defined]
    return blocking


def _iterate(loop_thread: LoopThread, source: AsyncIterator[R]) -> Iterator[R]:
    async def step() -> R:
        return await anext(source)

    try:
        while True:
            try:
                yield loop_thread.run(step())
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None and loop_thread.alive:

            async def close() -> None:
                await aclose()

            loop_thread.run(close())


class _Facade:
    """Something whose methods run against an async object on the loop thread.

    A subclass names that object's class, ``of=``; every public method of it that the subclass
    does not define itself (nor list in ``unbridged``) is bridged (see :func:`_bridge`).
    """

    def __init_subclass__(
        cls, /, of: type | None = None, unbridged: Collection[str] = (), **kwargs: Any
    ) -> None:
        """Bridge the public methods of ``of`` that this class lacks."""
        super().__init_subclass__(**kwargs)
        if of is None:  # a base class
            return
        for name, method in public_methods(of).items():
            if name in unbridged or name in vars(cls):
                continue
            blocking = _bridge(method)
            blocking.__qualname__ = f"{cls.__qualname__}.{name}"
            setattr(cls, name, blocking)

    def _bridge_target(self) -> tuple[Any, LoopThread]:
        raise NotImplementedError


class _BlockingGroup(_Facade):
    def __init__(self, client: Wachat, attribute: str) -> None:
        self._client = client
        self._attribute = attribute

    def _bridge_target(self) -> tuple[Any, LoopThread]:
        target, loop_thread = self._client._bridge_target()
        return getattr(target, self._attribute), loop_thread


# Type checkers see each method's blocking signature from the lines under TYPE_CHECKING; at run
# time every public method of the async group is bridged, listed here or not.


class Instances(_BlockingGroup, of=AsyncInstances):
    """``wa.instances``, blocking: create instances, get their QR codes, watch them connect,
    list, delete. Same arguments, results and errors as ``AsyncWachat().instances``.

    ``name`` parameters are API instance names (``created.instance.api_instance_name``, like
    ``t1_mq9r2jov_jakarta_store``), except in ``create`` where you choose a friendly name.
    """

    if TYPE_CHECKING:
        create = _bridge(AsyncInstances.create)
        create_qr_image = _bridge(AsyncInstances.create_qr_image)
        create_many = _bridge(AsyncInstances.create_many)
        qr = _bridge(AsyncInstances.qr)
        qr_image = _bridge(AsyncInstances.qr_image)
        qr_image_url = _bridge(AsyncInstances.qr_image_url)
        qr_live_url = _bridge(AsyncInstances.qr_live_url)
        state = _bridge(AsyncInstances.state)
        list = _bridge(AsyncInstances.list)
        delete = _bridge(AsyncInstances.delete)
        profile_picture = _bridge(AsyncInstances.profile_picture)
        wait_until_connected = _bridge(AsyncInstances.wait_until_connected)
        dedupe = _bridge(AsyncInstances.dedupe)


class Messages(_BlockingGroup, of=AsyncMessages):
    """``wa.messages``, blocking: send WhatsApp messages from a connected instance. Same
    arguments, results and errors as ``AsyncWachat().messages``.

    ``name`` is the API instance name; ``number`` the recipient, digits with country code
    (``+``, spaces and dashes are dropped). ``delay`` is the typing delay in milliseconds (the
    server picks 3-5 s when omitted).
    """

    if TYPE_CHECKING:
        send = _bridge(AsyncMessages.send)
        send_many = _bridge(AsyncMessages.send_many)
        send_text = _bridge(AsyncMessages.send_text)
        send_media = _bridge(AsyncMessages.send_media)
        send_location = _bridge(AsyncMessages.send_location)
        send_list = _bridge(AsyncMessages.send_list)
        send_buttons = _bridge(AsyncMessages.send_buttons)
        # Not async: the same callables as the async group's.
        record_receipt: Callable[[Receipt], MessageRecord | None]
        status: Callable[[str], MessageRecord | None]
        wait_for_status = _bridge(AsyncMessages.wait_for_status)
        save_receipts = _bridge(AsyncMessages.save_receipts)


class Webhooks(_BlockingGroup, of=AsyncWebhooks):
    """``wa.webhooks``, blocking: list, create and update the webhooks of your account. Same
    arguments, results and errors as ``AsyncWachat().webhooks``."""

    if TYPE_CHECKING:
        list = _bridge(AsyncWebhooks.list)
        upsert = _bridge(AsyncWebhooks.upsert)


class Wachat(_Facade, of=AsyncWachat, unbridged=("aclose",)):  # aclose's blocking form: close
    """Blocking client for the Wachat Enterprise API: same operations, arguments, results,
    errors, retries and timeouts as :class:`~wachat_async.AsyncWachat`::

        with Wachat() as wa:                          # key from WACHAT_API_KEY
            created = wa.instances.create("jakarta_store", number="628123456789")

    Safe to share between threads. In async code use AsyncWachat: called from a running event
    loop, Wachat blocks that loop (and warns once, EventLoopBlockingWarning).
    """

    instances = Group(Instances)
    messages = Group(Messages)
    webhooks = Group(Webhooks)

    if TYPE_CHECKING:
        request = _bridge(AsyncWachat.request)

    @arguments(Settings)
    def __init__(self, settings: Settings) -> None:
        """Build a client; the options are AsyncWachat's (without ``session``)."""
        # Checked here, so bad options raise in the caller's thread; the session opens on the
        # loop thread at the first call.
        self._settings = settings
        self._root: Wachat | None = None
        self._changes = OptionChanges()
        self._attach(self._build())
        self.instances = Instances(self, "instances")
        self.messages = Messages(self, "messages")
        self.webhooks = Webhooks(self, "webhooks")

    def _build(self) -> AsyncWachat:
        settings = self._settings
        return AsyncWachat(settings.api_key, **options_of(settings))

    def _attach(self, client: AsyncWachat) -> None:
        self._async = client
        self._pid = os.getpid()
        self._loop_thread = _loop_thread.current()
        self._loop_thread.clients.add(client)
        self._finalizer = weakref.finalize(self, self._loop_thread.close_soon, client)
        self._finalizer.atexit = False  # exit is handled by the loop thread's shutdown

    def _bridge_target(self) -> tuple[AsyncWachat, LoopThread]:
        if self._pid != os.getpid():
            self._after_fork()
        return self._async, self._loop_thread

    def _after_fork(self) -> None:
        if self._root is None:
            self._finalizer.detach()
            self._attach(self._build())
        else:
            self._share(self._root)

    def _share(self, root: Wachat) -> None:
        """Use ``root``'s session (with this client's option changes) instead of its own."""
        self._finalizer.detach()  # its own client never opened a session: nothing to close
        target, loop_thread = root._bridge_target()
        self._root = root
        self._async = target.with_options(**self._changes.given())
        self._loop_thread = loop_thread
        self._pid = os.getpid()

    @property
    def settings(self) -> Settings:
        """The options in force (the key is not in its repr)."""
        return self._async.settings

    @property
    def base_url(self) -> str:
        return self._async.base_url

    def __repr__(self) -> str:
        return f"Wachat(base_url={self._async.base_url!r}, api_key='***')"

    @arguments(OptionChanges)
    def with_options(self, changes: OptionChanges) -> Wachat:
        """A client with other defaults sharing this one's session (close the original)."""
        root = self._root or self
        merged = self._changes.then(changes)
        settings = merged.apply(root._settings)
        derived = Wachat(settings.api_key, **options_of(settings))
        derived._changes = merged
        derived._share(root)
        return derived

    def close(self) -> None:
        """Close the session. Idempotent; a derived client (``with_options``) closes nothing."""
        if self._root is not None:
            return
        client, loop_thread = self._bridge_target()
        self._finalizer.detach()
        if loop_thread.alive and not client.closed:
            loop_thread.run(client.aclose())

    @property
    def closed(self) -> bool:
        return self._async.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


with_group_index(Wachat)
