"""Scriptable faults for :class:`~wachat_async.testing.FakeWachat`: what they are
(:class:`Fault`), which requests they hit (:class:`FaultPlan`), and how a request that meets
one is answered (:func:`answer_with_fault`).
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

import attrs
from aiohttp import web

from ._web import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FaultKind(enum.Enum):
    #: Answer with ``status`` (and ``Retry-After``) without processing the request.
    STATUS = "status"
    #: Wait ``delay`` seconds, then process and answer normally.
    DELAY = "delay"
    #: Close the connection before processing: nothing happened.
    DROP_BEFORE = "drop_before"
    #: Process the request, then close the connection without answering.
    DROP_AFTER = "drop_after"
    #: Process, then answer with the right status and a body that is not valid JSON.
    MALFORMED = "malformed"
    #: Process, then send only half of the body and close the connection.
    TRUNCATED = "truncated"
    #: Process, then answer with an HTML body and ``text/html``.
    WRONG_CONTENT_TYPE = "wrong_content_type"
    #: Hang up without an answer, and process the request only when the next one this fault
    #: hits arrives, just before that one: a lost request that lands late. Inject it with
    #: ``times=2``.
    LAND_LATE = "land_late"

    @property
    def processes(self) -> bool:
        """Whether the server really does the work when this fault hits."""
        return self not in (FaultKind.STATUS, FaultKind.DROP_BEFORE)


@attrs.frozen
class Fault:
    """One misbehaviour. Build with the class methods: ``Fault.status(503, retry_after=1)``."""

    kind: FaultKind
    status_code: int = 503
    #: ``Retry-After`` header value for STATUS faults (seconds, or an HTTP date string).
    retry_after: float | str | None = None
    #: ``retry-after-ms`` header value for STATUS faults.
    retry_after_ms: float | None = None
    delay: float = 0.0
    message: str | None = None
    #: For LAND_LATE: the request held until the next one arrives.
    held: _Held | None = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def status(
        cls,
        status_code: int,
        *,
        retry_after: float | str | None = None,
        retry_after_ms: float | None = None,
        message: str | None = None,
    ) -> Fault:
        return cls(
            FaultKind.STATUS,
            status_code=status_code,
            retry_after=retry_after,
            retry_after_ms=retry_after_ms,
            message=message,
        )

    @classmethod
    def slow(cls, delay: float) -> Fault:
        return cls(FaultKind.DELAY, delay=delay)

    @classmethod
    def drop_before(cls) -> Fault:
        return cls(FaultKind.DROP_BEFORE)

    @classmethod
    def drop_after(cls) -> Fault:
        return cls(FaultKind.DROP_AFTER)

    @classmethod
    def malformed(cls) -> Fault:
        return cls(FaultKind.MALFORMED)

    @classmethod
    def truncated(cls) -> Fault:
        return cls(FaultKind.TRUNCATED)

    @classmethod
    def wrong_content_type(cls) -> Fault:
        return cls(FaultKind.WRONG_CONTENT_TYPE)

    @classmethod
    def land_late(cls) -> Fault:
        return cls(FaultKind.LAND_LATE, held=_Held())


@attrs.define(eq=False)
class _Held:
    request: web.Request | None = None


@attrs.define
class _Rule:
    fault: Fault
    path: str | None
    method: str | None
    remaining: int | None  # None: forever

    def matches(self, method: str, path: str) -> bool:
        return (self.path is None or self.path == path) and (
            self.method is None or self.method == method
        )


@attrs.define
class _Chaos:
    rate: float
    faults: Sequence[Fault]
    rng: random.Random
    path: str | None
    method: str | None


class FaultPlan:
    """Which requests misbehave: scripted rules first (in order added), then random chaos."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self._chaos: _Chaos | None = None

    def add(self, fault: Fault, *, path: str | None, method: str | None, times: int | None) -> None:
        self._rules.append(_Rule(fault, path, method.upper() if method else None, times))

    def chaos(
        self,
        rate: float,
        faults: Sequence[Fault],
        *,
        seed: int,
        path: str | None,
        method: str | None,
    ) -> None:
        self._chaos = _Chaos(
            rate, list(faults), random.Random(seed), path, method.upper() if method else None
        )

    def clear(self) -> None:
        self._rules.clear()
        self._chaos = None

    def take(self, method: str, path: str) -> Fault | None:
        for rule in self._rules:
            if rule.matches(method, path):
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                return rule.fault
        chaos = self._chaos
        if (
            chaos
            and (chaos.path is None or chaos.path == path)
            and (chaos.method is None or chaos.method == method)
            and chaos.rng.random() < chaos.rate
        ):
            return chaos.rng.choice(chaos.faults)
        return None


async def answer_with_fault(
    request: web.Request, handler: Handler, fault: Fault
) -> web.StreamResponse:
    """Answer ``request`` as ``fault`` says; ``handler`` does the real work when it happens."""
    kind = fault.kind
    if kind is FaultKind.STATUS:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = str(fault.retry_after_ms)
        return error_response(
            fault.status_code, fault.message or f"Injected {fault.status_code}", headers=headers
        )
    if kind is FaultKind.DROP_BEFORE:
        _drop(request)
    if kind is FaultKind.LAND_LATE and fault.held is not None:
        if fault.held.request is None:
            await request.read()  # kept for later, when the connection is long gone
            fault.held.request = request
            _drop(request)
        late, fault.held.request = fault.held.request, None
        await handler(late)
        return await handler(request)
    if kind is FaultKind.DELAY:
        await asyncio.sleep(fault.delay)
    response = await handler(request)
    if kind is FaultKind.DELAY or not isinstance(response, web.Response):
        return response
    body = response.body if isinstance(response.body, bytes) else b""
    if kind is FaultKind.DROP_AFTER:
        _drop(request)
    if kind is FaultKind.MALFORMED:
        return web.Response(
            status=response.status,
            body=b'{"success": true, "instance": {"id',
            content_type="application/json",
        )
    if kind is FaultKind.WRONG_CONTENT_TYPE:
        return web.Response(
            status=response.status,
            text="<html><body>Bad gateway page</body></html>",
            content_type="text/html",
        )
    # TRUNCATED: promise the whole body, send half, hang up.
    stream = web.StreamResponse(
        status=response.status, headers={"Content-Type": response.content_type}
    )
    stream.content_length = len(body)
    await stream.prepare(request)
    await stream.write(body[: len(body) // 2])
    return _drop(request)


def _drop(request: web.Request) -> NoReturn:
    """Hang up without (another byte of) an answer."""
    transport = request.transport
    if transport is not None:
        transport.close()
    raise asyncio.CancelledError
