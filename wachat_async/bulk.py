"""Bulk provisioning: stream specs through ``create`` with bounded concurrency, a rate limit and
a crash-safe journal, so that a crash or a re-run never creates an instance twice.

The journal is a SQLite file (WAL mode: a killed process loses no committed row). Each spec is
keyed by its friendly ``instance_name`` and recorded as ``in_flight`` *before* its create is
sent, then ``done`` (with the API name), ``failed`` (nothing was created) or ``unknown``. A re-run
skips ``done`` rows, and reconciles ``in_flight`` and ``unknown`` rows through
``GET /instance/list`` before deciding to create. The journal never holds the API key or any
other part of the spec.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import attrs

from ._http import Call
from .errors import InvalidRequestError, OutcomeUnknownError, WachatError
from .models import CreatedInstance, CreateSpec

if TYPE_CHECKING:
    from .instances import AsyncInstances

__all__ = ["Journal", "ProvisionProgress", "ProvisionResult"]

SpecInput = CreateSpec | Mapping[str, Any]


@attrs.frozen
class ProvisionResult:
    """The outcome of one spec: ``created``, or the typed ``error``; ``skipped`` when the
    journal says an earlier run already created it (nothing was sent this time)."""

    #: Position of the spec in the input, from 0.
    index: int
    #: The spec as given (a CreateSpec, or the mapping it could not be built from).
    spec: SpecInput
    created: CreatedInstance | None = None
    error: WachatError | None = None
    skipped: bool = False
    #: The API instance name, when known (also for skipped specs).
    api_instance_name: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def instance_name(self) -> str | None:
        if isinstance(self.spec, CreateSpec):
            return self.spec.instance_name
        name = self.spec.get("instance_name")
        return name if isinstance(name, str) else None


@attrs.frozen
class ProvisionProgress:
    """Counts so far, handed to ``on_progress`` after each spec finishes."""

    submitted: int
    succeeded: int
    failed: int
    skipped: int

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.skipped

    @property
    def in_flight(self) -> int:
        return self.submitted - self.finished


@attrs.frozen
class JournalEntry:
    instance_name: str
    state: str  # in_flight | done | failed | unknown
    api_instance_name: str | None
    started_at: float | None
    error: str | None


class Journal:
    """The provisioning journal: one SQLite row per friendly instance name."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS provision (
                 instance_name TEXT PRIMARY KEY,
                 state TEXT NOT NULL CHECK (state IN ('in_flight', 'done', 'failed', 'unknown')),
                 api_instance_name TEXT,
                 started_at REAL,
                 error TEXT,
                 updated_at REAL NOT NULL)"""
        )

    def get(self, instance_name: str) -> JournalEntry | None:
        row = self._db.execute(
            "SELECT instance_name, state, api_instance_name, started_at, error FROM provision "
            "WHERE instance_name = ?",
            (instance_name,),
        ).fetchone()
        return None if row is None else JournalEntry(*row)

    def entries(self) -> list[JournalEntry]:
        rows = self._db.execute(
            "SELECT instance_name, state, api_instance_name, started_at, error FROM provision"
        ).fetchall()
        return [JournalEntry(*row) for row in rows]

    def _put(
        self,
        instance_name: str,
        state: str,
        *,
        api_instance_name: str | None = None,
        started_at: float | None = None,
        error: str | None = None,
    ) -> None:
        self._db.execute(
            """INSERT INTO provision (instance_name, state, api_instance_name, started_at, error,
                                      updated_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT(instance_name) DO UPDATE SET
                 state = excluded.state,
                 api_instance_name = COALESCE(excluded.api_instance_name, api_instance_name),
                 started_at = COALESCE(excluded.started_at, started_at),
                 error = excluded.error,
                 updated_at = excluded.updated_at""",
            (instance_name, state, api_instance_name, started_at, error, time.time()),
        )

    def begin(self, instance_name: str, started_at: float) -> None:
        """Recorded (and committed) before the create is sent."""
        self._put(instance_name, "in_flight", started_at=started_at)

    def done(self, instance_name: str, api_instance_name: str) -> None:
        self._put(instance_name, "done", api_instance_name=api_instance_name)

    def failed(self, instance_name: str, error: WachatError) -> None:
        state = "unknown" if isinstance(error, OutcomeUnknownError) else "failed"
        self._put(instance_name, state, error=f"{type(error).__name__}: {error}"[:500])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _RateLimiter:
    """Spaces out starts to at most ``rate`` per second."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(self._next, now)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


def _as_spec(spec: SpecInput) -> CreateSpec:
    if isinstance(spec, CreateSpec):
        return spec
    if isinstance(spec, Mapping):
        if not spec.get("instance_name"):
            raise InvalidRequestError("instance_name is required")
        try:
            return CreateSpec.from_mapping(spec)
        except TypeError as exc:
            raise InvalidRequestError(str(exc)) from None
    raise InvalidRequestError(
        f"a spec must be a CreateSpec or a mapping, got {type(spec).__name__}"
    )


async def provision(
    instances: AsyncInstances,
    specs: Iterable[SpecInput] | AsyncIterable[SpecInput],
    *,
    concurrency: int,
    rate_limit: float | None,
    journal: str | os.PathLike[str] | None,
    on_progress: Callable[[ProvisionProgress], None] | None,
) -> AsyncIterator[ProvisionResult]:
    """The engine behind ``instances.create_many`` (see there)."""
    if not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidRequestError(f"concurrency must be a positive integer, got {concurrency!r}")
    if rate_limit is not None and rate_limit <= 0:
        raise InvalidRequestError(f"rate_limit must be positive, got {rate_limit!r}")
    from .instances import create_body

    log = Journal(journal) if journal is not None else None
    limiter = _RateLimiter(rate_limit) if rate_limit else None
    in_flight_names: set[str] = set()
    counts = {"submitted": 0, "succeeded": 0, "failed": 0, "skipped": 0}

    async def run_one(index: int, given: SpecInput) -> ProvisionResult:
        try:
            spec = _as_spec(given)
            friendly, body = create_body(spec)
        except InvalidRequestError as exc:
            return ProvisionResult(index, given, error=exc)
        if friendly in in_flight_names:
            return ProvisionResult(
                index,
                spec,
                error=InvalidRequestError(f"instance_name {friendly!r} appears twice in the input"),
            )
        in_flight_names.add(friendly)
        try:
            return await provision_one(index, spec, friendly, body)
        finally:
            in_flight_names.discard(friendly)

    async def provision_one(
        index: int, spec: CreateSpec, friendly: str, body: dict[str, Any]
    ) -> ProvisionResult:
        entry = log.get(friendly) if log else None
        if entry is not None and entry.state == "done":
            return ProvisionResult(
                index, spec, skipped=True, api_instance_name=entry.api_instance_name
            )
        try:
            if log is not None and entry is not None and entry.state in ("in_flight", "unknown"):
                found = await _reconcile_earlier_run(instances, friendly, entry)
                if found is not None:
                    log.done(friendly, found.instance.api_instance_name)
                    return ProvisionResult(
                        index,
                        spec,
                        created=found,
                        api_instance_name=found.instance.api_instance_name,
                    )
            if limiter is not None:
                await limiter.wait()
            if log is not None:
                log.begin(friendly, time.time())
            created = await instances._create(friendly, body, timeout=None, max_retries=None)
        except WachatError as exc:
            if log is not None:
                log.failed(friendly, exc)
            return ProvisionResult(index, spec, error=exc)
        if log is not None:
            log.done(friendly, created.instance.api_instance_name)
        return ProvisionResult(
            index, spec, created=created, api_instance_name=created.instance.api_instance_name
        )

    # ``concurrency`` workers pull specs from one source and hand results over a queue: no task
    # per spec. A slot is taken before a spec is read and given back once its result is handed
    # out, so at most ``concurrency`` specs are between the input and the caller at any time.
    next_spec = _spec_reader(specs)
    slots = asyncio.Semaphore(concurrency)
    results: asyncio.Queue[ProvisionResult | BaseException | None] = asyncio.Queue()
    positions = itertools.count()

    async def worker() -> None:
        try:
            while True:
                await slots.acquire()
                given = await next_spec()
                if given is _END:
                    slots.release()
                    return
                counts["submitted"] += 1
                results.put_nowait(await run_one(next(positions), given))
        except Exception as exc:  # a bug: hand it to the consumer, which re-raises it
            results.put_nowait(exc)
        finally:
            results.put_nowait(None)  # this worker is done

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    running = concurrency
    try:
        while running:
            item = await results.get()
            if item is None:
                running -= 1
                continue
            if isinstance(item, BaseException):
                raise item
            key = "skipped" if item.skipped else "succeeded" if item.ok else "failed"
            counts[key] += 1
            if on_progress is not None:
                on_progress(ProvisionProgress(**counts))
            slots.release()
            yield item
    finally:
        # Interrupted (Ctrl-C, aclose, an error): stop what is in flight. Their journal rows stay
        # in_flight, and the next run reconciles them.
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if log is not None:
            log.close()


async def _reconcile_earlier_run(
    instances: AsyncInstances, friendly: str, entry: JournalEntry
) -> CreatedInstance | None:
    """Did an earlier, interrupted run create ``friendly``? Its QR is fetched afresh if so."""
    settings = instances._client.settings
    started = entry.started_at or 0.0
    call = Call("instances.create", "POST", "/instance/create", json={"instanceName": friendly})
    found = await instances._find_created(
        friendly,
        since=started,
        settle_until=started + settings.timeout + settings.settle_delay,
        call=call,
    )
    return None if found is None else await instances._created_from_info(found)


_END: Any = object()


def _spec_reader(
    specs: Iterable[SpecInput] | AsyncIterable[SpecInput],
) -> Callable[[], Awaitable[Any]]:
    """One ``await read()`` per spec, ``_END`` after the last; sync iterables are read directly
    (wrapping them in an async generator would cost an extra hop per spec)."""
    if isinstance(specs, AsyncIterable):
        source = aiter(specs)

        async def read_async() -> Any:
            return await anext(source, _END)

        return read_async
    iterator = iter(specs)

    async def read() -> Any:
        return next(iterator, _END)

    return read
