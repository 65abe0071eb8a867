"""The life of the aiohttp session a transport sends over: the caller's (never opened or closed
here), or one of the client's own, opened lazily inside the running loop (as aiohttp requires),
reopened on a new loop once the old one is gone, closed when its loop shuts down if nobody closed
it first, and abandoned without touching its sockets after fork."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

import aiohttp

#: Guards of sessions abandoned after fork: kept so they are never finalized in the child.
_ABANDONED: list[object] = []


async def _close_when_loop_ends(session: aiohttp.ClientSession) -> AsyncGenerator[None]:
    """Suspended for the session's life. The loop closes async generators when it shuts down
    (``asyncio.run`` does) or when this one is garbage collected, so a client nobody closed
    still closes its session, on its own loop, without an "Unclosed client session" warning."""
    try:
        yield
    finally:
        if not session.closed:
            await session.close()


class SessionLife:
    """The session of one transport, and the loop it belongs to."""

    def __init__(
        self, session: aiohttp.ClientSession | None, new: Callable[[], aiohttp.ClientSession]
    ) -> None:
        #: The session in use (None until the first request, when it is ours).
        self.session = session
        #: Whether the session is ours (made by ``new``) rather than the caller's.
        self.owned = session is None
        #: The loop our session belongs to.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self._new = new
        self._guard: AsyncGenerator[None] | None = None

    async def open(self) -> aiohttp.ClientSession:
        """The session for the running loop: the caller's, or ours (made now if need be)."""
        if not self.owned:
            assert self.session is not None
            return self.session
        if self.closed:
            raise RuntimeError("This Wachat client is closed; create a new one.")
        loop = asyncio.get_running_loop()
        old, old_loop = self.session, self.loop
        if old is not None and not old.closed:
            if old_loop is not None and old_loop.is_running():
                raise RuntimeError(
                    "This AsyncWachat is in use on another event loop (another thread?); "
                    "create one client per event loop."
                )
            self._detach()  # its loop is gone or stopped: nothing can close it properly now
        session = self._new()
        guard = _close_when_loop_ends(session)
        await anext(guard)
        self.session, self.loop, self._guard = session, loop, guard
        return session

    async def aclose(self) -> None:
        """Close our session (never the caller's). Idempotent."""
        self.closed = True
        if not self.owned:
            return
        guard, self._guard = self._guard, None
        session, self.session = self.session, None
        if session is not None and not session.closed:
            if self.loop is asyncio.get_running_loop():
                await session.close()
            else:
                self._detach_session(session)
        if guard is not None:
            await guard.aclose()  # its finally finds the session closed

    def abandon(self) -> None:
        """Forget the session without touching its sockets: after fork they are the parent's."""
        self.closed = True
        if self.owned:
            self._detach()

    def _detach(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None:
            _ABANDONED.append(guard)
        session, self.session = self.session, None
        if session is not None:
            self._detach_session(session)

    @staticmethod
    def _detach_session(session: aiohttp.ClientSession) -> None:
        """Mark ``session`` closed without I/O: its pooled sockets belong to a loop (or a parent
        process) we must not touch. Emptying the pool keeps either object from warning."""
        connector = session.connector
        session.detach()
        conns = getattr(connector, "_conns", None)
        if isinstance(conns, dict):
            conns.clear()
