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
import concurrent.futures
import contextlib
import os
import threading
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from ._retry import RetryPolicy
from .client import AsyncWachat
from .instances import AsyncInstances
from .messages import AsyncMessages
from .webhooks import AsyncWebhooks

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
        "until the call returns; use AsyncWachat in async code.",
        EventLoopBlockingWarning,
        stacklevel=4,  # warn <- run <- the bridged call <- the user's line
    )


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


class _Bridged(Generic[P, R]):
    """A class attribute that exposes an async method as a blocking one, signature intact."""

    def __init__(self, method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]) -> None:
        self._method = method
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...
    @overload
    def __get__(self, obj: _Facade, owner: type) -> Callable[P, R]: ...
    def __get__(self, obj: _Facade | None, owner: type) -> Self | Callable[P, R]:
        if obj is None:
            return self
        method = self._method

        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            target, portal = obj._bridge_target()
            return portal.run(method(target, *args, **kwargs))

        call.__name__ = self._name
        call.__doc__ = self.__doc__
        return call


class _BridgedIterator(Generic[P, R]):
    """Exposes an async-iterator method as one returning a plain iterator."""

    def __init__(self, method: Callable[Concatenate[Any, P], AsyncIterator[R]]) -> None:
        self._method = method
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...
    @overload
    def __get__(self, obj: _Facade, owner: type) -> Callable[P, Iterator[R]]: ...
    def __get__(self, obj: _Facade | None, owner: type) -> Self | Callable[P, Iterator[R]]:
        if obj is None:
            return self
        method = self._method

        def call(*args: P.args, **kwargs: P.kwargs) -> Iterator[R]:
            target, portal = obj._bridge_target()
            return _iterate(portal, method(target, *args, **kwargs))

        return call


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
        self._method = method
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...
    @overload
    def __get__(self, obj: _Facade, owner: type) -> Callable[P, R]: ...
    def __get__(self, obj: _Facade | None, owner: type) -> Self | Callable[P, R]:
        if obj is None:
            return self
        method = self._method

        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            return method(obj._bridge_target()[0], *args, **kwargs)

        return call


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
    """``wa.instances``: the blocking twin of :class:`~wachat_async.instances.AsyncInstances`."""

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


class Messages(_Group):
    """``wa.messages``: the blocking twin of :class:`~wachat_async.messages.AsyncMessages`."""

    send_text = _Bridged(AsyncMessages.send_text)
    send_media = _Bridged(AsyncMessages.send_media)
    send_location = _Bridged(AsyncMessages.send_location)
    send_list = _Bridged(AsyncMessages.send_list)
    send_buttons = _Bridged(AsyncMessages.send_buttons)


class Webhooks(_Group):
    """``wa.webhooks``: the blocking twin of :class:`~wachat_async.webhooks.AsyncWebhooks`."""

    list = _Bridged(AsyncWebhooks.list)
    upsert = _Bridged(AsyncWebhooks.upsert)


class Wachat(_Facade):
    """Blocking client for the Wachat Enterprise API: same operations, arguments, results,
    errors, retries and timeouts as :class:`~wachat_async.AsyncWachat`::

        with Wachat() as wa:                          # key from WACHAT_API_KEY
            created = wa.instances.create("jakarta_store", number="628123456789")

    Safe to share between threads. Do not call it from async code: use AsyncWachat there.
    """

    request = _Bridged(AsyncWachat.request)

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        allow_insecure_http: bool = False,
        retry_policy: RetryPolicy | None = None,
        reconcile: bool = True,
        settle_delay: float = 3.0,
        connect_timeout: float = 10.0,
        pool_limit: int = 100,
    ) -> None:
        # Built here so bad settings raise in the caller's thread; its session opens on the loop.
        self._build: Callable[[], AsyncWachat] = lambda: AsyncWachat(
            api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            allow_insecure_http=allow_insecure_http,
            retry_policy=retry_policy,
            reconcile=reconcile,
            settle_delay=settle_delay,
            connect_timeout=connect_timeout,
            pool_limit=pool_limit,
        )
        self._root: Wachat | None = None
        self._options: dict[str, Any] = {}
        self._attach(self._build())
        self.instances = Instances(self, "instances")
        self.messages = Messages(self, "messages")
        self.webhooks = Webhooks(self, "webhooks")

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
            root_client, portal = self._root._bridge_target()
            self._async = root_client.with_options(**self._options)
            self._portal = portal
            self._pid = os.getpid()

    @property
    def base_url(self) -> str:
        return self._async.base_url

    def __repr__(self) -> str:
        return f"Wachat(base_url={self._async.base_url!r}, api_key='***')"

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        reconcile: bool | None = None,
        settle_delay: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> Wachat:
        """A client with other defaults sharing this one's session (close the original)."""
        options = {
            k: v
            for k, v in {
                "timeout": timeout,
                "max_retries": max_retries,
                "reconcile": reconcile,
                "settle_delay": settle_delay,
                "retry_policy": retry_policy,
            }.items()
            if v is not None
        }
        root = self._root or self
        derived = object.__new__(Wachat)
        derived._build = self._build
        derived._root = root
        derived._options = {**self._options, **options}
        target, portal = root._bridge_target()
        derived._async = target.with_options(**derived._options)
        derived._portal = portal
        derived._pid = os.getpid()
        derived.instances = Instances(derived, "instances")
        derived.messages = Messages(derived, "messages")
        derived.webhooks = Webhooks(derived, "webhooks")
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
