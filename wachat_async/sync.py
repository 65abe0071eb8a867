"""Wachat: the synchronous facade. A thin bridge over AsyncWachat, never a second implementation.

One daemon thread per process runs an event loop; each :class:`Wachat` owns a private
:class:`~wachat_async.AsyncWachat` whose session lives on that loop, and every call is handed
over with :func:`asyncio.run_coroutine_threadsafe`. The edge cases handled here:

- many threads may call one client at once;
- a thread that runs its own event loop (a notebook, an async web handler) may call it: it
  works, and warns once (:class:`EventLoopBlockingWarning`) since it blocks that loop;
- the loop thread itself may not (a callback such as ``on_qr`` calling back into ``Wachat``
  would deadlock): that raises RuntimeError;
- Ctrl-C during a call cancels the request, waits for its cleanup, and re-raises;
- after ``os.fork()`` the child gets a loop thread of its own, and clients inherited from the
  parent rebuild their session there (the parent's sockets are left alone);
- ``close()``, the context manager, garbage collection and interpreter exit each close the
  session, and the daemon thread never holds the interpreter open.
"""

from __future__ import annotations

import asyncio
import atexit
import collections.abc
import concurrent.futures
import contextlib
import functools
import os
import sys
import threading
import types
import typing
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from ._config import OptionChanges, Settings, options_of
from ._signatures import arguments, signature
from .client import AsyncWachat
from .resources.instances import AsyncInstances
from .resources.messages import AsyncMessages
from .resources.webhooks import AsyncWebhooks

__all__ = ["EventLoopBlockingWarning", "Wachat"]

P = ParamSpec("P")
R = TypeVar("R")

#: How long a waiting caller sleeps between checks, so Ctrl-C is seen promptly.
_WAIT_SLICE = 0.1
#: How long Ctrl-C waits for the cancelled request to clean up; and exit, for sessions to close.
_CLEANUP_TIMEOUT = 2.0


class EventLoopBlockingWarning(RuntimeWarning):
    """Wachat was called from a thread whose event loop is running; that loop is blocked meanwhile.

    Use AsyncWachat there, or silence it:
    ``warnings.simplefilter("ignore", EventLoopBlockingWarning)``.
    """


class _LoopThread:
    """The event loop thread of this process, and the clients living on it."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.clients: weakref.WeakSet[AsyncWachat] = weakref.WeakSet()
        started = threading.Event()
        self.thread = threading.Thread(
            target=self._serve, args=(started,), name="wachat-loop", daemon=True
        )
        self.thread.start()
        started.wait()

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(started.set)
        self.loop.run_forever()

    @property
    def alive(self) -> bool:
        return self.pid == os.getpid() and self.thread.is_alive() and not self.loop.is_closed()

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run ``coro`` on the loop thread and wait for it, interruptibly."""
        if threading.get_ident() == self.thread.ident:
            coro.close()
            raise RuntimeError(
                "Wachat was called from its own event loop thread (from a callback such as "
                "on_qr?); that would deadlock. Inside async code, use AsyncWachat."
            )
        _warn_if_blocking_a_loop()
        # A lock released by the task's done-callback: half the cost of
        # run_coroutine_threadsafe's future and waiter, and acquire(timeout) sees Ctrl-C.
        done = threading.Lock()
        done.acquire()
        started: list[asyncio.Task[R]] = []

        def start() -> None:
            task = self.loop.create_task(coro)
            task.add_done_callback(lambda _: done.release())
            started.append(task)

        try:
            self.loop.call_soon_threadsafe(start)
        except RuntimeError:  # the loop is closed: the interpreter is exiting
            coro.close()
            raise RuntimeError("Wachat's event loop has shut down (interpreter exit?)") from None
        try:
            while not done.acquire(timeout=_WAIT_SLICE):
                if not self.thread.is_alive():
                    raise RuntimeError("Wachat's event loop thread has stopped")
        except BaseException:  # KeyboardInterrupt, SystemExit: cancel the request first
            # Callbacks run in order, so the task exists by the time this one runs.
            with contextlib.suppress(RuntimeError):  # unless the loop is gone already
                self.loop.call_soon_threadsafe(lambda: started[0].cancel())
                done.acquire(timeout=_CLEANUP_TIMEOUT)
            raise
        return started[0].result()

    def close_soon(self, client: AsyncWachat) -> None:
        """Schedule ``client.aclose()`` without waiting (from a finalizer, in any thread)."""
        if self.alive:
            with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
                asyncio.run_coroutine_threadsafe(client.aclose(), self.loop)

    def shutdown(self) -> None:
        """Close every client's session, then stop the loop. Bounded in time; never hangs."""
        if not self.alive:
            return
        clients = list(self.clients)
        if clients:

            async def close_all() -> None:
                await asyncio.wait_for(
                    asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True),
                    _CLEANUP_TIMEOUT,
                )

            # Exit goes on whatever happens here.
            with contextlib.suppress(Exception, concurrent.futures.CancelledError):
                asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(
                    _CLEANUP_TIMEOUT + 1
                )
        with contextlib.suppress(Exception, concurrent.futures.CancelledError):
            asyncio.run_coroutine_threadsafe(self.loop.shutdown_asyncgens(), self.loop).result(
                _CLEANUP_TIMEOUT
            )
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(_CLEANUP_TIMEOUT)
        if not self.thread.is_alive():
            self.loop.close()

    def abandon(self) -> None:
        """In a forked child: forget the parent's loop and sessions without touching them."""
        for client in list(self.clients):
            client._transport.abandon()
        self.clients = weakref.WeakSet()


_lock = threading.Lock()
_current: _LoopThread | None = None
_warned_blocking = False


def _loop_thread() -> _LoopThread:
    global _current
    current = _current
    if current is not None and current.pid == os.getpid():
        return current
    with _lock:
        if _current is None or _current.pid != os.getpid():
            _current = _LoopThread()
        return _current


def _warn_if_blocking_a_loop() -> None:
    global _warned_blocking
    if _warned_blocking:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    _warned_blocking = True
    warnings.warn(
        "Wachat (the synchronous client) was called from a running event loop, which it blocks "
        "until the call returns; use AsyncWachat in async code (in a notebook: "
        "`async with AsyncWachat() as wa:` and `await` its calls).",
        EventLoopBlockingWarning,
        stacklevel=_first_frame_outside_the_package(),
    )


def _first_frame_outside_the_package() -> int:
    """The ``stacklevel`` that makes a warning point at the user's line."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame = sys._getframe(1)  # the function that warns
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back
        level += 1
    return level


def _after_fork_in_child() -> None:
    global _current, _lock
    _lock = threading.Lock()
    inherited, _current = _current, None
    if inherited is not None:
        inherited.abandon()


def _shutdown_at_exit() -> None:
    current = _current
    if current is not None:
        current.shutdown()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_shutdown_at_exit)


# -- bridging -------------------------------------------------------------------------------


def _bridged_function(
    method: Callable[..., Any], run: Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]
) -> Callable[..., Any]:
    """A plain function standing for ``method`` of the async group: its name, docstring and
    real signature (for ``help()``, IDEs and ``inspect``), with async return types made
    blocking (``AsyncIterator[X]`` becomes ``Iterator[X]``)."""

    def bridged(facade: _Facade, /, *args: Any, **kwargs: Any) -> Any:
        target, portal = facade._bridge_target()
        return run(portal, method(target, *args, **kwargs), args, kwargs)

    functools.update_wrapper(bridged, method)
    sig = signature(method)
    returns = sig.return_annotation
    if typing.get_origin(returns) in (
        collections.abc.AsyncGenerator,
        collections.abc.AsyncIterator,
        collections.abc.AsyncIterable,
    ):
        item: Any = typing.get_args(returns)[0]
        returns = Iterator[item]
    bridged.__signature__ = sig.replace(return_annotation=returns)  # type: ignore[attr-defined]
    return bridged


class _Bridged(Generic[P, R]):
    """A class attribute that exposes an async method as a blocking one, signature intact."""

    def __init__(self, method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]) -> None:
        self._function = _bridged_function(
            method, lambda portal, coro, args, kwargs: portal.run(coro)
        )
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._function.__qualname__ = f"{owner.__qualname__}.{name}"

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...
    @overload
    def __get__(self, obj: _Facade, owner: type) -> Callable[P, R]: ...
    def __get__(self, obj: _Facade | None, owner: type) -> Self | Callable[P, R]:
        if obj is None:
            return self
        return types.MethodType(self._function, obj)


class _BridgedIterator(Generic[P, R]):
    """Exposes an async-iterator method as one returning a plain iterator."""

    def __init__(self, method: Callable[Concatenate[Any, P], AsyncIterator[R]]) -> None:
        self._function = _bridged_function(
            method, lambda portal, source, args, kwargs: _iterate(portal, source)
        )
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._function.__qualname__ = f"{owner.__qualname__}.{name}"

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...
    @overload
    def __get__(self, obj: _Facade, owner: type) -> Callable[P, Iterator[R]]: ...
    def __get__(self, obj: _Facade | None, owner: type) -> Self | Callable[P, Iterator[R]]:
        if obj is None:
            return self
        return types.MethodType(self._function, obj)


def _iterate(portal: _LoopThread, source: AsyncIterator[R]) -> Iterator[R]:
    async def step() -> R:
        return await anext(source)

    try:
        while True:
            try:
                yield portal.run(step())
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None and portal.alive:

            async def close() -> None:
                await aclose()

            portal.run(close())


class _Delegated(Generic[P, R]):
    """Exposes a plain (non-async) method of the async group as is."""

    def __init__(self, method: Callable[Concatenate[Any, P], R]) -> None:
        self._function = _bridged_function(method, lambda portal, result, args, kwargs: result)
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._function.__qualname__ = f"{owner.__qualname__}.{name}"

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...
    @overload
    def __get__(self, obj: _Facade, owner: type) -> Callable[P, R]: ...
    def __get__(self, obj: _Facade | None, owner: type) -> Self | Callable[P, R]:
        if obj is None:
            return self
        return types.MethodType(self._function, obj)


class _Facade:
    """Something whose bridged attributes run against an async object on the loop thread."""

    def _bridge_target(self) -> tuple[Any, _LoopThread]:
        raise NotImplementedError


class _Group(_Facade):
    def __init__(self, client: Wachat, attribute: str) -> None:
        self._client = client
        self._attribute = attribute

    def _bridge_target(self) -> tuple[Any, _LoopThread]:
        target, portal = self._client._bridge_target()
        return getattr(target, self._attribute), portal


class Instances(_Group):
    """``wa.instances``, blocking: the twin of ``AsyncWachat().instances``."""

    create = _Bridged(AsyncInstances.create)
    create_qr_image = _Bridged(AsyncInstances.create_qr_image)
    create_many = _BridgedIterator(AsyncInstances.create_many)
    qr = _Bridged(AsyncInstances.qr)
    qr_image = _Bridged(AsyncInstances.qr_image)
    qr_image_url = _Delegated(AsyncInstances.qr_image_url)
    qr_live_url = _Delegated(AsyncInstances.qr_live_url)
    state = _Bridged(AsyncInstances.state)
    list = _Bridged(AsyncInstances.list)
    delete = _Bridged(AsyncInstances.delete)
    profile_picture = _Bridged(AsyncInstances.profile_picture)
    wait_until_connected = _Bridged(AsyncInstances.wait_until_connected)
    dedupe = _Bridged(AsyncInstances.dedupe)


class Messages(_Group):
    """``wa.messages``, blocking: the twin of ``AsyncWachat().messages``."""

    send = _Bridged(AsyncMessages.send)
    send_many = _BridgedIterator(AsyncMessages.send_many)
    send_text = _Bridged(AsyncMessages.send_text)
    send_media = _Bridged(AsyncMessages.send_media)
    send_location = _Bridged(AsyncMessages.send_location)
    send_list = _Bridged(AsyncMessages.send_list)
    send_buttons = _Bridged(AsyncMessages.send_buttons)


class Webhooks(_Group):
    """``wa.webhooks``, blocking: the twin of ``AsyncWachat().webhooks``."""

    list = _Bridged(AsyncWebhooks.list)
    upsert = _Bridged(AsyncWebhooks.upsert)


class Wachat(_Facade):
    """Blocking client for the Wachat Enterprise API: same operations, arguments, results,
    errors, retries and timeouts as :class:`~wachat_async.AsyncWachat`::

        with Wachat() as wa:                          # key from WACHAT_API_KEY
            created = wa.instances.create("jakarta_store", number="628123456789")

    Safe to share between threads. In async code use AsyncWachat: called from a running event
    loop, Wachat blocks that loop (and warns once, EventLoopBlockingWarning).
    """

    request = _Bridged(AsyncWachat.request)

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
        self._portal = _loop_thread()
        self._portal.clients.add(client)
        self._finalizer = weakref.finalize(self, self._portal.close_soon, client)
        self._finalizer.atexit = False  # exit is handled by the loop thread's shutdown

    def _bridge_target(self) -> tuple[AsyncWachat, _LoopThread]:
        if self._pid != os.getpid():
            self._after_fork()
        return self._async, self._portal

    def _after_fork(self) -> None:
        if self._root is None:
            self._finalizer.detach()
            self._attach(self._build())
        else:
            self._share(self._root)

    def _share(self, root: Wachat) -> None:
        """Use ``root``'s session (with this client's option changes) instead of its own."""
        self._finalizer.detach()  # its own client never opened a session: nothing to close
        target, portal = root._bridge_target()
        self._root = root
        self._async = target.with_options(**self._changes.given())
        self._portal = portal
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
        client, portal = self._bridge_target()
        self._finalizer.detach()
        if portal.alive and not client.closed:
            portal.run(client.aclose())

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
