"""The event loop thread the synchronous facade runs every call on, one per process.

Its life: started lazily by the first :class:`~wachat_async.Wachat`, a daemon (so it never holds
the interpreter open), replaced in a forked child (the parent's loop and sockets left alone),
and shut down at exit after closing the sessions of the clients on it. :meth:`LoopThread.run`
hands a coroutine over from any other thread, lets Ctrl-C cancel it, refuses the loop thread
itself (that would deadlock) and warns once when the caller's own event loop is blocked.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .client import AsyncWachat

__all__ = ["EventLoopBlockingWarning", "LoopThread", "current"]

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


class LoopThread:
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
        # The caller's context (its current trace span among it) goes with the call.
        context = contextvars.copy_context()

        def start() -> None:
            task = self.loop.create_task(coro, context=context)
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
_current: LoopThread | None = None
_warned_blocking = False


def current() -> LoopThread:
    """This process's loop thread, started at the first call (and again in a forked child)."""
    global _current
    running = _current
    if running is not None and running.pid == os.getpid():
        return running
    with _lock:
        if _current is None or _current.pid != os.getpid():
            _current = LoopThread()
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
    running = _current
    if running is not None:
        running.shutdown()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_shutdown_at_exit)
