"""Bulk provisioning: specs streamed through create with bounded concurrency, a rate limit and
an optional journal, so that neither a crash nor a re-run creates an instance twice.

Every spec is checked first; a bad one (or a friendly name the input already had) fails alone,
as its own result, and the rest go on. With a journal (:mod:`wachat_async.bulk.journal`), a
spec's row is on disk as ``in_flight`` before its create is sent; a re-run skips ``done`` rows
and reconciles rows left ``in_flight`` or ``unknown`` by an earlier run before creating.

A run that created anything ends with a sweep (:mod:`wachat_async.bulk.dedupe`) over the names
it created: another instance of such a name that appeared during the run (a resent create whose
first attempt landed late) is deleted unless it is connected; what was found is logged and
handed to ``on_progress`` in a last :class:`ProvisionProgress` (``duplicates``). What the
account held before the run is listed first and never touched; if that list cannot be read,
the run goes on without the sweep (and says so in the log).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol

import attrs

from .. import _encode
from .. import _validate as check
from .._config import Settings
from ..errors import InvalidRequestError, JournalError, WachatError
from ..models import CreatedInstance, CreateSpec, QrCode
from ._pool import run_pool
from .dedupe import DuplicateGroup, Instances, dedupe
from .journal import DONE, IN_FLIGHT, UNKNOWN, Journal, error_text, outcome_state

__all__ = ["ProvisionProgress", "ProvisionResult", "provision"]

logger = logging.getLogger("wachat_async")

SpecInput = CreateSpec | Mapping[str, Any]


class Creates(Protocol):
    """What provisioning needs of the client: the exactly-once create, and its recovery."""

    def create(self, body: dict[str, Any]) -> Coroutine[Any, Any, CreatedInstance]: ...

    async def recover(self, friendly: str, started_at: float) -> CreatedInstance | None: ...


@attrs.frozen
class ProvisionResult:
    """The outcome of one spec: ``created``, or the typed ``error``; ``skipped`` when the
    journal says an earlier run already created it (nothing was sent this time).

    ``api_instance_name`` is set for every spec that succeeded, skipped ones included; for a
    skipped one ``qrcode`` is None: ``wa.instances.qr(result.api_instance_name)`` fetches a
    fresh one (or raises ConflictError once it is connected).
    """

    #: Position of the spec in the input, from 0.
    index: int
    #: The spec as given (a CreateSpec, or the mapping it could not be built from).
    spec: SpecInput
    created: CreatedInstance | None = None
    error: WachatError | None = None
    skipped: bool = False
    #: The API instance name, when known (also for skipped specs).
    api_instance_name: str | None = None
    #: For a friendly name the input already had: the index of its first spec.
    duplicate_of: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def instance_name(self) -> str | None:
        if isinstance(self.spec, CreateSpec):
            return self.spec.instance_name
        name = self.spec.get("instance_name") if isinstance(self.spec, Mapping) else None
        return name if isinstance(name, str) else None

    @property
    def qrcode(self) -> QrCode | None:
        """The QR code that came with the create (None for skipped or failed specs)."""
        return None if self.created is None else self.created.qrcode

    @property
    def status(self) -> str:
        """``created``, ``reconciled`` (found after a lost answer), ``skipped`` or ``failed``."""
        if self.error is not None:
            return "failed"
        if self.skipped:
            return "skipped"
        return "reconciled" if self.created is not None and self.created.reconciled else "created"


@attrs.frozen
class ProvisionProgress:
    """Counts so far, handed to ``on_progress`` after each spec finishes."""

    submitted: int
    succeeded: int
    failed: int
    skipped: int
    #: After the last spec: the friendly names this run created that more than one instance
    #: holds, and what the sweep deleted (empty until then, and when there are none).
    duplicates: tuple[DuplicateGroup, ...] = ()

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.skipped

    @property
    def in_flight(self) -> int:
        return self.submitted - self.finished


class RateLimiter:
    """Spaces out starts to at most ``rate`` per second."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(self._next, now)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


def check_rate(field: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequestError(f"{field} must be a finite number per second, got {value!r}")
    if value <= 0:
        raise InvalidRequestError(f"{field} must be more than zero, got {value!r}")
    return float(value)


def _as_spec(given: Any) -> CreateSpec:
    if isinstance(given, CreateSpec):
        return given
    if isinstance(given, Mapping):
        return CreateSpec.from_mapping(given)
    raise InvalidRequestError(
        f"a spec must be a CreateSpec or a mapping, got {type(given).__name__}"
    )


class _Provisioner:
    """The state of one run: names seen, the journal, the rate limiter."""

    def __init__(
        self,
        creator: Creates,
        journal: Journal | None,
        limiter: RateLimiter | None,
        instances: Instances,
    ) -> None:
        self.creator = creator
        self.journal = journal
        self.limiter = limiter
        self.instances = instances
        self.first_seen: dict[str, int] = {}
        #: What the account held before this run's first create (listed then, once).
        self.existing: asyncio.Future[set[str] | None] | None = None

    async def one(self, index: int, given: SpecInput) -> ProvisionResult:
        try:
            spec = _as_spec(given)
            body = _encode.create_body(spec)
        except InvalidRequestError as exc:
            return ProvisionResult(index, given, error=exc)
        friendly: str = body["instanceName"]
        first = self.first_seen.setdefault(friendly, index)
        if first != index:
            return ProvisionResult(
                index,
                spec,
                error=InvalidRequestError(
                    f"instance_name {friendly!r} appears twice in the input (first as spec "
                    f"{first}); friendly names must be unique"
                ),
                duplicate_of=first,
            )
        try:
            return await self._create(index, spec, friendly, body)
        except JournalError:
            raise  # not this spec's failure: without its journal the run must stop
        except WachatError as exc:
            if self.journal is not None:
                await self.journal.record_provision(
                    friendly, outcome_state(exc), error=error_text(exc)
                )
            return ProvisionResult(index, spec, error=exc)

    async def _create(
        self, index: int, spec: CreateSpec, friendly: str, body: dict[str, Any]
    ) -> ProvisionResult:
        journal = self.journal
        if journal is not None:
            entry = await journal.provision_entry(friendly)
            if entry is not None and entry.state == DONE:
                return ProvisionResult(
                    index, spec, skipped=True, api_instance_name=entry.api_instance_name
                )
            if entry is not None and entry.state in (IN_FLIGHT, UNKNOWN):
                found = await self.creator.recover(friendly, entry.started_at or 0.0)
                if found is not None:
                    return await self._done(index, spec, friendly, found)
        if self.existing is None:
            self.existing = asyncio.ensure_future(_listed(self.instances))
        await self.existing
        if self.limiter is not None:
            await self.limiter.wait()
        if journal is not None:
            await journal.record_provision(friendly, IN_FLIGHT, started_at=time.time())
        created = await self.creator.create(body)
        return await self._done(index, spec, friendly, created)

    async def _done(
        self, index: int, spec: CreateSpec, friendly: str, created: CreatedInstance
    ) -> ProvisionResult:
        api_name = created.instance.api_instance_name
        if self.journal is not None:
            await self.journal.record_provision(friendly, DONE, api_instance_name=api_name)
        return ProvisionResult(index, spec, created=created, api_instance_name=api_name)


async def _listed(instances: Instances) -> set[str] | None:
    """The API names the account holds before a run (what its sweep must not touch)."""
    try:
        return {info.api_instance_name for info in await instances.list()}
    except WachatError as exc:
        logger.warning("could not list instances before provisioning (%s): no duplicate sweep", exc)
        return None


def _progress(
    counts: Mapping[str, int], duplicates: tuple[DuplicateGroup, ...] = ()
) -> ProvisionProgress:
    return ProvisionProgress(
        counts["submitted"], counts["succeeded"], counts["failed"], counts["skipped"], duplicates
    )


async def provision(
    creator: Creates,
    settings: Settings,
    specs: Iterable[SpecInput] | AsyncIterable[SpecInput],
    *,
    concurrency: int,
    rate_limit: float | None,
    journal: str | os.PathLike[str] | None,
    on_progress: Callable[[ProvisionProgress], None] | None,
    instances: Instances,
) -> AsyncIterator[ProvisionResult]:
    """The engine behind ``instances.create_many`` (see there)."""
    check.positive_int("concurrency", concurrency)
    rate = check_rate("rate_limit", rate_limit)
    log = (
        None
        if journal is None
        else await Journal.open(journal, api_key=settings.api_key, base_url=settings.base_url)
    )
    run = _Provisioner(creator, log, RateLimiter(rate) if rate else None, instances)
    counts = {"submitted": 0, "succeeded": 0, "failed": 0, "skipped": 0}

    def submitted() -> None:
        counts["submitted"] += 1

    #: The API name each friendly name created by this run was given: the one to keep.
    created: dict[str, str] = {}
    try:
        async for result in run_pool(specs, run.one, concurrency, on_start=submitted):
            key = "skipped" if result.skipped else "succeeded" if result.ok else "failed"
            counts[key] += 1
            if result.created is not None and result.instance_name is not None:
                created[result.instance_name] = result.created.instance.api_instance_name
            if on_progress is not None:
                on_progress(_progress(counts))
            yield result
        existing = None if run.existing is None else await run.existing
        if created and existing is not None:
            groups = await dedupe(
                instances, delete=True, keep=created, names=created.keys(), existing=existing
            )
            if groups and on_progress is not None:
                on_progress(_progress(counts, tuple(groups)))
    finally:
        # Interrupted (Ctrl-C, aclose, an error): what was in flight stays in_flight in the
        # journal, and the next run reconciles it.
        if log is not None:
            await log.close()
