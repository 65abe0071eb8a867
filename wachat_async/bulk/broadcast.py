"""Broadcasts: one message each to many opted-in recipients, paced per instance, journaled, and
never sent twice.

Every spec is checked as it is read (recipient normalised, message built); a bad one, a key the
input already had (by default one message per recipient per instance per campaign) or an
opted-out recipient is reported alone, as its own result. The rest go to their instance's
lane: each instance has its own queue and its own :class:`Pace` (a minimum interval with
random jitter, caps, a warm-up ramp), so one slow or paused number never holds the others up.

With a journal (the provisioning journal: one file, locked, bound to one account), each
message's row is on disk as ``in_flight`` before it is sent, then ``done`` (with the message id),
``failed`` (not sent: resent by a re-run) or ``unknown`` (the send may have happened). A re-run
skips what is done and reports what is unknown (or was in flight when a run died) without
resending it, unless asked to (``resend_unknown=True``).

A 429 pauses that instance only, for as long as the server asked. An instance that is refused
as not connected (or whose state leaves ``open``) is paused and reported; its remaining
messages are left unsent, for a re-run.
"""

from __future__ import annotations

import asyncio
import enum
import math
import os
import random
import string
import time
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
)
from types import MappingProxyType
from typing import Any, Protocol

import attrs

from .. import _validate as check
from .._build import builder
from .._config import Settings
from .._request import Call
from ..errors import (
    BadRequestError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitError,
    WachatError,
)
from ..models import InstanceState, MessagePayload, SendResult
from ._pool import END, reader
from .journal import DONE, FAILED, IN_FLIGHT, UNKNOWN, Journal, MessageEntry, error_text

__all__ = [
    "BroadcastProgress",
    "BroadcastResult",
    "BroadcastStatus",
    "Pace",
    "SendSpec",
    "render_template",
]

#: How many specs may be read ahead of what the lanes have sent (bounds memory on any input).
READ_AHEAD = 10_000
#: How often a lane gets a 429 too long to wait out inside the call before it gives the message up.
_THROTTLED_TRIES = 5


@attrs.frozen(kw_only=True)
class Pace:
    """How fast one instance (one WhatsApp number) sends. Bursts get numbers restricted or
    banned, so the default is conservative: one message at a time, at least 5 s apart plus up to
    5 s of random jitter (about 8 a minute per number). Several instances send in parallel,
    each at its own pace.

    ``hourly`` and ``daily`` cap one instance's messages in any rolling hour and day (counting
    what the journal records of earlier runs); ``warmup_messages`` ramps a new number up: its
    first messages are spaced from ``warmup_interval`` down to ``interval``.
    """

    #: Seconds at least between two messages of one instance.
    interval: float = attrs.field(default=5.0, validator=check.attribute(check.seconds_or_zero))
    #: Up to this many seconds more, at random, each time.
    jitter: float = attrs.field(default=5.0, validator=check.attribute(check.seconds_or_zero))
    #: Messages of one instance in flight at once.
    per_instance: int = attrs.field(default=1, validator=check.attribute(check.positive_int))
    hourly: int | None = attrs.field(
        default=None, validator=check.attribute(check.positive_int, optional=True)
    )
    daily: int | None = attrs.field(
        default=None, validator=check.attribute(check.positive_int, optional=True)
    )
    #: How many first messages of each instance are spaced more widely.
    warmup_messages: int = attrs.field(default=0, validator=check.attribute(check.non_negative_int))
    #: The spacing of the first of those (then linearly down to ``interval``); default 3x.
    warmup_interval: float | None = attrs.field(
        default=None, validator=check.attribute(check.seconds, optional=True)
    )
    #: Seeds the jitter, for repeatable runs.
    seed: int | None = None

    @classmethod
    def off(cls, *, per_instance: int = 64) -> Pace:
        """No spacing at all (a test server, a benchmark; never a real number)."""
        return cls(interval=0.0, jitter=0.0, per_instance=per_instance)

    def spacing(self, sent: int) -> float:
        """The minimum interval before message number ``sent`` (0-based) of an instance."""
        if sent >= self.warmup_messages:
            return self.interval
        start = self.warmup_interval if self.warmup_interval is not None else 3 * self.interval
        return start + (self.interval - start) * sent / self.warmup_messages

    def projected_seconds(self, messages: int) -> float:
        """Expected time for one instance to send ``messages`` at this pace (caps included)."""
        if messages <= 1:
            return 0.0
        # Only the warm-up's gaps differ; the rest are all ``interval`` (the CLI asks this for
        # its ETA after every row, so it must not cost a step per message left).
        warm = range(1, min(messages, self.warmup_messages))
        steady = messages - max(1, self.warmup_messages)
        gaps = (sum(map(self.spacing, warm)) + max(0, steady) * self.interval) / self.per_instance
        total = gaps + (messages - 1) * self.jitter / 2 / self.per_instance
        for cap, window in ((self.hourly, 3600.0), (self.daily, 86400.0)):
            if cap is not None:
                total = max(total, (math.ceil(messages / cap) - 1) * window)
        return total


@attrs.frozen(kw_only=True)
class SendSpec:
    """One message of a broadcast: from which instance (its API name), to whom, what."""

    instance: str
    recipient: str
    message: MessagePayload
    #: What makes it one message: by default ``campaign:instance:recipient``.
    key: str | None = None


class BroadcastStatus(enum.StrEnum):
    SENT = "sent"
    #: An earlier run sent it (the journal says so); nothing was sent now.
    SKIPPED = "skipped"
    #: It may or may not have been sent (an ambiguous failure now, or a run that died while it
    #: was in flight); it was not resent.
    UNKNOWN = "unknown"
    #: It was not sent (a refusal, a bad message); a re-run tries again.
    FAILED = "failed"
    #: The spec itself is wrong (bad number, missing template value, a repeated key).
    INVALID = "invalid"
    OPTED_OUT = "opted_out"
    #: Its instance was paused (disconnected, or not found); a re-run tries again.
    PAUSED = "paused"


@attrs.frozen(weakref_slot=False)
class BroadcastResult:
    """The outcome of one spec."""

    #: Position of the spec in the input, from 0.
    index: int
    #: The spec as given.
    spec: Any
    status: BroadcastStatus
    key: str | None = None
    instance: str | None = None
    recipient: str | None = None
    message_id: str | None = None
    error: WachatError | None = None
    #: For a key the input already had: the index of its first spec.
    duplicate_of: int | None = None

    @property
    def ok(self) -> bool:
        """Sent now or earlier, or deliberately not sent (opted out)."""
        return self.status in (
            BroadcastStatus.SENT,
            BroadcastStatus.SKIPPED,
            BroadcastStatus.OPTED_OUT,
        )


@attrs.frozen
class BroadcastProgress:
    """Counts so far, handed to ``on_progress`` after each result (live, read-only views)."""

    #: Results so far, by status.
    counts: Mapping[BroadcastStatus, int]
    #: Messages sent now, by instance.
    sent_by_instance: Mapping[str, int]
    #: Instances paused, with why.
    paused: Mapping[str, str]

    @property
    def finished(self) -> int:
        return sum(self.counts.values())


def render_template(template: str, values: Mapping[str, Any]) -> str:
    """``template`` with its ``{placeholders}`` filled from ``values`` (``{{`` for a brace).

    A placeholder with no value, or an empty one, raises InvalidRequestError naming it: a
    literal ``{name}`` is never sent."""
    out: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidRequestError(f"the template is not valid: {exc}") from None
    for literal, field, spec, conversion in parsed:
        out.append(literal)
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise InvalidRequestError(
                f"template placeholder {{{field}}} must be a plain column name, like {{name}}"
            )
        value = values.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise InvalidRequestError(f"no value for {{{field}}} in this row")
        out.append(str(value))
    return "".join(out)


_broadcast_result = builder(BroadcastResult)


class Sends(Protocol):
    """What a broadcast needs of the client."""

    def prepare(
        self, instance: str, recipient: str, message: MessagePayload
    ) -> tuple[Call, dict[str, Any]]: ...

    def send_prepared(
        self, call: Call, body: dict[str, Any]
    ) -> Coroutine[Any, Any, SendResult]: ...

    def state(self, instance: str) -> Coroutine[Any, Any, InstanceState]: ...


class _Pacer:
    """One instance's turns: spacing, jitter, caps, and pauses asked by the server."""

    def __init__(self, pace: Pace, rng: random.Random, history: Iterable[float] = ()) -> None:
        self.pace = pace
        self._rng = rng
        self._lock = asyncio.Lock()
        self._next = 0.0
        self._paused_until = 0.0
        self.sent = 0
        # Wall-clock times of recent sends, for the caps (with the journal's, from earlier runs).
        self._recent: deque[float] = deque(sorted(history))
        #: Nothing to wait for, ever, unless the server asks.
        self._unpaced = not (
            pace.interval or pace.jitter or pace.hourly or pace.daily or pace.warmup_messages
        )

    async def turn(self) -> None:
        """Wait until this instance may send its next message."""
        if self._unpaced and self._paused_until == 0.0:
            self.sent += 1
            return
        async with self._lock:
            pace = self.pace
            loop = asyncio.get_running_loop()
            while True:
                now = loop.time()
                wait = max(self._next, self._paused_until) - now
                wait = max(wait, self._cap_wait(time.time()))
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            gap = pace.spacing(self.sent)
            if pace.jitter:
                gap += self._rng.uniform(0.0, pace.jitter)
            self._next = loop.time() + gap
            self.sent += 1
            if pace.hourly is not None or pace.daily is not None:
                self._recent.append(time.time())

    def _cap_wait(self, now: float) -> float:
        pace = self.pace
        recent = self._recent
        while recent and recent[0] < now - 86400.0:
            recent.popleft()
        wait = 0.0
        for cap, window in ((pace.hourly, 3600.0), (pace.daily, 86400.0)):
            if cap is not None:
                inside = [t for t in recent if t >= now - window]
                if len(inside) >= cap:
                    wait = max(wait, inside[-cap] + window - now)
        return wait

    def pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + seconds)


@attrs.define
class _Item:
    index: int
    spec: Any
    key: str
    instance: str
    recipient: str
    call: Call
    body: dict[str, Any]


class _Lane:
    """One instance: its queue, its pacer, its workers, and whether it is paused."""

    def __init__(self, instance: str, pacer: _Pacer) -> None:
        self.instance = instance
        self.pacer = pacer
        self.queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self.paused: str | None = None
        self.workers: list[asyncio.Task[None]] = []


class _Broadcast:
    """The state of one run."""

    def __init__(
        self,
        sends: Sends,
        *,
        campaign: str,
        pace: Pace,
        journal: Journal | None,
        opt_out: frozenset[str],
        resend_unknown: bool,
    ) -> None:
        self.sends = sends
        self.campaign = campaign
        self.pace = pace
        self.journal = journal
        #: The journal already holds messages of this campaign: some may be settled.
        self.rerun = False
        self.opt_out = opt_out
        self.resend_unknown = resend_unknown
        self.rng = random.Random(pace.seed)
        self.lanes: dict[str, _Lane] = {}
        #: The hash of each key read so far, with the index of its spec.
        self.seen: dict[int, int] = {}
        self.results: asyncio.Queue[BroadcastResult | BaseException | None] = asyncio.Queue()
        self.counts = dict.fromkeys(BroadcastStatus, 0)
        self.sent_by_instance: dict[str, int] = {}
        self.paused: dict[str, str] = {}

    # -- reading ---------------------------------------------------------------------------

    def prepare(self, index: int, given: Any) -> _Item | BroadcastResult:
        try:
            if isinstance(given, Mapping):
                given = SendSpec(**given)
            if not isinstance(given, SendSpec):
                raise InvalidRequestError(
                    f"a spec must be a SendSpec or a mapping, got {type(given).__name__}"
                )
            call, body = self.sends.prepare(given.instance, given.recipient, given.message)
            instance, recipient = body["instanceName"], body["number"]  # checked, normalised
            key = (
                check.text("key", given.key)
                if given.key is not None
                else f"{self.campaign}:{instance}:{recipient}"
            )
        except InvalidRequestError as exc:
            return BroadcastResult(index, given, BroadcastStatus.INVALID, error=exc)
        except TypeError as exc:  # a mapping with unknown or missing fields
            error = InvalidRequestError(f"not a send spec: {exc}")
            return BroadcastResult(index, given, BroadcastStatus.INVALID, error=error)
        # Remembered by hash, not by text: a million keys take about 110 MB, not several hundred.
        # Two keys that share a 64-bit hash (odds around 1e-8 in a million) would report the
        # second as a repeat.
        first = self.seen.setdefault(hash(key), index)
        if first != index:
            error = InvalidRequestError(
                f"recipient {recipient} appears again for instance {instance} in this campaign "
                f"(key {key!r}, first at index {first})"
            )
            return BroadcastResult(
                index,
                given,
                BroadcastStatus.INVALID,
                key,
                instance,
                recipient,
                error=error,
                duplicate_of=first,
            )
        if recipient in self.opt_out:
            return BroadcastResult(
                index, given, BroadcastStatus.OPTED_OUT, key, instance, recipient
            )
        return _Item(index, given, key, instance, recipient, call, body)

    async def lane_for(self, instance: str) -> _Lane:
        lane = self.lanes.get(instance)
        if lane is None:
            history: list[float] = []
            if self.journal is not None and (self.pace.hourly or self.pace.daily):
                history = await self.journal.sent_times(instance, since=time.time() - 86400.0)
            lane = self.lanes[instance] = _Lane(instance, _Pacer(self.pace, self.rng, history))
            lane.workers = [
                asyncio.create_task(self.work(lane)) for _ in range(self.pace.per_instance)
            ]
        return lane

    # -- sending ---------------------------------------------------------------------------

    async def work(self, lane: _Lane) -> None:
        try:
            while (item := await lane.queue.get()) is not None:
                self.results.put_nowait(await self.deliver(lane, item))
        except Exception as exc:  # a bug, or the journal failing: the run stops with it
            self.results.put_nowait(exc)

    def _result(
        self,
        item: _Item,
        status: BroadcastStatus,
        *,
        message_id: str | None = None,
        error: WachatError | None = None,
    ) -> BroadcastResult:
        return _broadcast_result(
            item.index,
            item.spec,
            status,
            item.key,
            item.instance,
            item.recipient,
            message_id,
            error,
            None,
        )

    def _settled(self, item: _Item, entry: MessageEntry | None) -> BroadcastResult | None:
        """The result for a message an earlier run settled (or may have), else None."""
        if entry is None:
            return None
        if entry.state == DONE:
            return self._result(item, BroadcastStatus.SKIPPED, message_id=entry.message_id)
        if entry.state in (IN_FLIGHT, UNKNOWN) and not self.resend_unknown:
            return self._result(
                item,
                BroadcastStatus.UNKNOWN,
                error=OutcomeUnknownError(
                    "an earlier run may have sent this message "
                    f"({entry.error or 'it was in flight when that run ended'}); "
                    "not resent (resend_unknown=True would)",
                    request=item.call,
                ),
            )
        return None

    async def deliver(self, lane: _Lane, item: _Item) -> BroadcastResult:
        if lane.paused is not None:
            return self._result(item, BroadcastStatus.PAUSED, error=_paused(lane))
        if self.journal is not None and self.rerun:
            # Skip what is settled before waiting a turn for it (the claim checks again).
            settled = self._settled(item, await self.journal.message_entry(item.key))
            if settled is not None:
                return settled
        # A 429 makes a lane try the same message again later.
        for tried in range(_THROTTLED_TRIES):
            await lane.pacer.turn()
            if lane.paused is not None:
                return self._result(item, BroadcastStatus.PAUSED, error=_paused(lane))
            outcome = await self._send_once(lane, item, first_try=tried == 0)
            if outcome is not None:
                return outcome
        error = InvalidRequestError(f"instance {lane.instance} stayed rate-limited; not sent")
        self._record(item, FAILED, error=error)
        return self._result(item, BroadcastStatus.FAILED, error=error)

    async def _send_once(
        self, lane: _Lane, item: _Item, *, first_try: bool
    ) -> BroadcastResult | None:
        """One send; None when the server asked to wait first (the lane is paused that long)."""
        journal = self.journal
        if journal is not None and (self.rerun or not first_try):
            entry = await journal.claim_message(
                item.key,
                campaign=self.campaign,
                instance=item.instance,
                recipient=item.recipient,
                started_at=time.time(),
                reclaim_unknown=self.resend_unknown,
            )
            settled = self._settled(item, entry)
            if settled is not None:
                return settled
        elif journal is not None:  # a first run's first try: nothing can be settled yet
            await journal.claim_new_message(
                item.key,
                campaign=self.campaign,
                instance=item.instance,
                recipient=item.recipient,
                started_at=time.time(),
            )
        try:
            sent = await self.sends.send_prepared(item.call, item.body)
        except OutcomeUnknownError as exc:
            self._record(item, UNKNOWN, error=exc)
            return self._result(item, BroadcastStatus.UNKNOWN, error=exc)
        except RateLimitError as exc:  # refused, so not sent: pause this instance, try again
            self._record(item, FAILED, error=exc)
            lane.pacer.pause(exc.retry_after if exc.retry_after is not None else 60.0)
            return None
        except (BadRequestError, ConflictError, NotFoundError) as exc:
            self._record(item, FAILED, error=exc)
            if await self._disconnected(lane, exc):
                return self._result(item, BroadcastStatus.PAUSED, error=exc)
            return self._result(item, BroadcastStatus.FAILED, error=exc)
        except WachatError as exc:
            self._record(item, FAILED, error=exc)
            return self._result(item, BroadcastStatus.FAILED, error=exc)
        self._record(item, DONE, message_id=sent.message_id)
        self.sent_by_instance[lane.instance] = self.sent_by_instance.get(lane.instance, 0) + 1
        return self._result(item, BroadcastStatus.SENT, message_id=sent.message_id)

    async def _disconnected(self, lane: _Lane, refusal: WachatError) -> bool:
        """After a refusal: is the instance gone or not connected? Then pause it."""
        if lane.paused is not None:
            return True
        if isinstance(refusal, NotFoundError):
            reason = f"instance {lane.instance} not found ({refusal})"
        else:
            try:
                state = await self.sends.state(lane.instance)
            except NotFoundError as exc:
                reason = f"instance {lane.instance} not found ({exc})"
            except WachatError:
                return False  # cannot tell: treat the refusal as this message's alone
            else:
                if state.is_connected:
                    return False
                reason = f"instance {lane.instance} is not connected (state {state.state.value})"
        lane.paused = self.paused[lane.instance] = reason
        return True

    def _record(
        self,
        item: _Item,
        state: str,
        *,
        message_id: str | None = None,
        error: WachatError | None = None,
    ) -> None:
        if self.journal is not None:
            self.journal.record_message(
                item.key,
                state,
                message_id=message_id,
                error=None if error is None else error_text(error),
            )

    def progress(self) -> BroadcastProgress:
        # Live read-only views: a copy per result would cost O(instances) each time.
        return BroadcastProgress(
            MappingProxyType(self.counts),
            MappingProxyType(self.sent_by_instance),
            MappingProxyType(self.paused),
        )


def _paused(lane: _Lane) -> InvalidRequestError:
    return InvalidRequestError(f"not sent: {lane.paused}; a re-run sends it once it is back")


def _opt_out_numbers(numbers: Iterable[str] | None) -> frozenset[str]:
    if numbers is None:
        return frozenset()
    if isinstance(numbers, str):
        raise InvalidRequestError("opt_out must be a collection of numbers, not one string")
    return frozenset(check.number("opt_out", n) for n in numbers)


async def broadcast(
    sends: Sends,
    settings: Settings,
    specs: Iterable[Any] | AsyncIterable[Any],
    *,
    campaign: str,
    pace: Pace,
    journal: str | os.PathLike[str] | None,
    opt_out: Iterable[str] | None,
    resend_unknown: bool,
    on_progress: Callable[[BroadcastProgress], None] | None,
) -> AsyncIterator[BroadcastResult]:
    """The engine behind ``messages.send_many`` (see there)."""
    campaign = check.text("campaign", campaign).strip()
    if not isinstance(pace, Pace):
        raise InvalidRequestError(f"pace must be a Pace, got {type(pace).__name__}")
    check.flag("resend_unknown", resend_unknown)
    opted_out = _opt_out_numbers(opt_out)
    log = (
        None
        if journal is None
        else await Journal.open(journal, api_key=settings.api_key, base_url=settings.base_url)
    )
    run = _Broadcast(
        sends,
        campaign=campaign,
        pace=pace,
        journal=log,
        opt_out=opted_out,
        resend_unknown=resend_unknown,
    )
    run.rerun = log is not None and await log.has_messages(campaign)
    slots = asyncio.Semaphore(READ_AHEAD)
    read_next: Callable[[], Awaitable[Any]] = reader(specs)
    outstanding = 0

    async def read() -> None:
        nonlocal outstanding
        try:
            index = 0
            while True:
                await slots.acquire()
                given = await read_next()
                if given is END:
                    break
                outstanding += 1
                prepared = run.prepare(index, given)
                index += 1
                if isinstance(prepared, BroadcastResult):
                    run.results.put_nowait(prepared)
                else:
                    (await run.lane_for(prepared.instance)).queue.put_nowait(prepared)
        except Exception as exc:  # the input failed (a bad file, a bug): the run stops with it
            run.results.put_nowait(exc)
        finally:
            for lane in run.lanes.values():
                for _ in lane.workers:
                    lane.queue.put_nowait(None)
            run.results.put_nowait(None)  # wakes the consumer to check whether all is done

    reading = asyncio.create_task(read())
    try:
        while True:
            if reading.done() and outstanding == 0:
                break
            outcome = await run.results.get()
            if outcome is None:
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            outstanding -= 1
            run.counts[outcome.status] += 1
            if on_progress is not None:
                on_progress(run.progress())
            slots.release()
            yield outcome
    finally:
        # Interrupted (Ctrl-C, aclose, an error): stop everything. Rows left in_flight are
        # reported as unknown by a re-run, never resent blindly.
        tasks = [reading, *(w for lane in run.lanes.values() for w in lane.workers)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if log is not None:
            await log.close()
