"""The broadcast engine: one message each to many opted-in recipients, paced per instance,
journaled, and never sent twice. (What a broadcast is made of and reports is
:mod:`.campaign`; the rules a spec is judged by, :mod:`.plan`.)

Every spec is judged as it is read (:class:`~.plan.Judge`: recipient normalised, message built);
a bad one, a key the input already had (by default one message per recipient per instance per
campaign) or an opted-out recipient is reported alone, as its own result. The rest go to their
instance's lane: each instance has its own queue and its own :class:`Pace` (a minimum interval
with random jitter, caps, a warm-up ramp), so one slow or paused number never holds the others
up.

With a journal (the provisioning journal: one file, locked, bound to one account), each
message's row is on disk as ``in_flight`` before it is sent, then ``done`` (with the message id),
``failed`` (not sent: resent by a re-run) or ``unknown`` (the send may have happened). A re-run
skips what is done and reports what is unknown (or was in flight when a run died) without
resending it, unless asked to (``resend_unknown=True``).

A 429 (or a 503 with Retry-After) holds that instance, every worker of it, for as long as the
server asked; the lane, not the call, retries, so no worker sends inside that window. A
message refused to the end is ``failed``. An instance that is refused as not connected (or
whose state leaves ``open``) is paused and reported; its remaining messages are left unsent,
for a re-run. What each instance is waiting for is in ``progress.waiting``.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
)
from types import MappingProxyType
from typing import Any, Protocol

import attrs

from .. import _validate as check
from .._build import builder
from .._config import Settings
from .._receipts import MessageLog, MessageStatus
from .._request import Call
from .._retry import RetryPolicy
from ..errors import (
    BadRequestError,
    ConflictError,
    FailureClass,
    InvalidRequestError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitError,
    WachatError,
)
from ..models import InstanceState, MessagePayload, SendResult
from ._pool import END, reader
from .campaign import (
    BroadcastProgress,
    BroadcastResult,
    BroadcastStatus,
    Health,
    InstanceWait,
    Pace,
    WaitReason,
)
from .journal import DONE, FAILED, IN_FLIGHT, UNKNOWN, Journal, MessageEntry, error_text
from .plan import Judge, Judged, opt_out_numbers

__all__ = ["Sends", "broadcast"]

#: How many specs may be read ahead of what the lanes have sent (bounds memory on any input).
READ_AHEAD = 10_000
#: How many of an instance's messages not known delivered its health follows, at most.
_PENDING = 1_000
#: How many 429s a message gets before it is given up (reported failed: the server refused it).
_THROTTLED_TRIES = 5


_broadcast_result = builder(BroadcastResult)


class Sends(Protocol):
    """What a broadcast needs of the client."""

    def prepare(
        self, instance: str, recipient: str, message: MessagePayload
    ) -> tuple[Call, dict[str, Any]]: ...

    def send_prepared(
        self, call: Call, body: dict[str, Any], *, max_retries: int | None = None
    ) -> Coroutine[Any, Any, SendResult]: ...

    def state(self, instance: str) -> Coroutine[Any, Any, InstanceState]: ...


class _Pacer:
    """One instance's turns: spacing, jitter, caps, and pauses asked by the server. Every
    worker of the instance goes through it, so a pause holds all of them (a shared gate).

    A pace is about the spacing the gateway sees. With one send in flight (``per_instance``
    1, the default) a gap starts when the previous send is answered or fails
    (:meth:`answered`): a send reaches the server before its answer comes back, so however long
    it was on its way, the next one arrives at least the gap later. With several in flight it
    is their starts that are spaced: a send delayed on its way may arrive closer to the next.
    """

    def __init__(
        self,
        pace: Pace,
        rng: random.Random,
        history: Iterable[float] = (),
        *,
        instance: str,
        waits: dict[str, InstanceWait],
        on_hold: Callable[[], None] | None = None,
    ) -> None:
        self.pace = pace
        self._rng = rng
        self._lock = asyncio.Lock()
        self._next = 0.0
        #: The gap given with the last turn (restarted by :meth:`answered`).
        self._gap = 0.0
        self._spaced_from_answers = pace.per_instance == 1
        self._paused_until = 0.0
        self.sent = 0
        # Wall-clock times of recent sends, for the caps (with the journal's, from earlier runs).
        self._recent: deque[float] = deque(sorted(history))
        #: Nothing to wait for, ever, unless the server asks.
        self._unpaced = not (
            pace.interval or pace.jitter or pace.hourly or pace.daily or pace.warmup_messages
        )
        self._instance = instance
        #: What each instance of the run waits for now (shown as progress).
        self._waits = waits
        #: Called when a wait on the server or a cap begins (a pace's spacing is expected).
        self._on_hold = on_hold

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
                throttled = self._paused_until - now
                capped = self._cap_wait(time.time())
                wait = max(self._next - now, throttled, capped)
                if wait <= 0:
                    break
                reason = (
                    WaitReason.THROTTLED
                    if wait == throttled
                    else WaitReason.CAPPED
                    if wait == capped
                    else WaitReason.PACED
                )
                await self._wait(reason, wait)
            gap = pace.spacing(self.sent)
            if pace.jitter:
                gap += self._rng.uniform(0.0, pace.jitter)
            # Spaced from this start, in case nothing is sent (then no answer restarts it).
            self._gap = gap
            self._next = loop.time() + gap
            self.sent += 1
            if pace.hourly is not None or pace.daily is not None:
                self._recent.append(time.time())

    def answered(self) -> None:
        """The send of the last turn was answered or failed: with one in flight, the next
        turn's gap starts now, so that it is kept at the server."""
        if self._spaced_from_answers and self._gap:
            loop = asyncio.get_running_loop()
            self._next = max(self._next, loop.time() + self._gap)

    async def hold(self) -> None:
        """Wait out a pause the server asked for after this turn was given (another worker's
        429 while this one was claiming its message): nothing is sent inside that window."""
        if self._paused_until == 0.0:
            return
        loop = asyncio.get_running_loop()
        while (wait := self._paused_until - loop.time()) > 0:
            await self._wait(WaitReason.THROTTLED, wait)

    async def _wait(self, reason: WaitReason, seconds: float) -> None:
        self._waits[self._instance] = InstanceWait(reason, time.time() + seconds)
        if reason is not WaitReason.PACED and self._on_hold is not None:
            self._on_hold()
        try:
            await asyncio.sleep(seconds)
        finally:
            self._waits.pop(self._instance, None)

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
        """Hold every worker of the instance for ``seconds`` (the server asked)."""
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + seconds)


class _Lane:
    """One instance: its queue, its pacer, its workers, and whether it is paused."""

    def __init__(self, instance: str, pacer: _Pacer) -> None:
        self.instance = instance
        self.pacer = pacer
        self.queue: asyncio.Queue[Judged | None] = asyncio.Queue()
        self.paused: str | None = None
        self.workers: list[asyncio.Task[None]] = []
        self.health = Health()
        #: This run's messages not known delivered yet: (when sent, message id), oldest first.
        self.pending: deque[tuple[float, str]] = deque()
        #: Whether a receipt of this instance arrived during the run.
        self.has_receipts = False


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
        policy: RetryPolicy,
        messages: MessageLog | None = None,
    ) -> None:
        self.sends = sends
        #: Where each message sent is linked to its campaign and key, for its receipts.
        self.messages = messages
        self.campaign = campaign
        self.pace = pace
        self.journal = journal
        #: The journal already holds messages of this campaign: some may be settled.
        self.rerun = False
        #: The rules each spec is judged by as it is read (the plan's).
        self.judge = Judge(sends.prepare, campaign=campaign, opt_out=opt_out)
        self.resend_unknown = resend_unknown
        self.rng = random.Random(pace.seed)
        self.lanes: dict[str, _Lane] = {}
        self.results: asyncio.Queue[BroadcastResult | BaseException | None] = asyncio.Queue()
        self.counts = dict.fromkeys(BroadcastStatus, 0)
        self.sent_by_instance: dict[str, int] = {}
        self.paused: dict[str, str] = {}
        self.waiting: dict[str, InstanceWait] = {}
        self.health: dict[str, Health] = {}
        self.policy = policy
        #: Told of each result and of each wait on the server or a cap.
        self.on_progress: Callable[[BroadcastProgress], None] | None = None

    # -- reading ---------------------------------------------------------------------------

    async def lane_for(self, instance: str) -> _Lane:
        lane = self.lanes.get(instance)
        if lane is None:
            history: list[float] = []
            if self.journal is not None and (self.pace.hourly or self.pace.daily):
                history = await self.journal.sent_times(instance, since=time.time() - 86400.0)
            pacer = _Pacer(
                self.pace,
                self.rng,
                history,
                instance=instance,
                waits=self.waiting,
                on_hold=self.on_hold,
            )
            lane = self.lanes[instance] = _Lane(instance, pacer)
            lane.workers = [
                asyncio.create_task(self.work(lane)) for _ in range(self.pace.per_instance)
            ]
        return lane

    # -- sending ---------------------------------------------------------------------------

    async def work(self, lane: _Lane) -> None:
        try:
            while (item := await lane.queue.get()) is not None:
                result = await self.deliver(lane, item)
                self._judge_health(lane, result)
                self.results.put_nowait(result)
        except Exception as exc:  # a bug, or the journal failing: the run stops with it
            self.results.put_nowait(exc)

    def _judge_health(self, lane: _Lane, result: BroadcastResult) -> None:
        """Count the send into its instance's health; pause the instance when the pace's
        ``min_health`` says so (a re-run resumes it, its health counted afresh)."""
        if result.status not in (BroadcastStatus.SENT, BroadcastStatus.FAILED):
            return
        health = lane.health
        failed = health.failed + (result.status is BroadcastStatus.FAILED)
        undelivered = health.undelivered
        if (
            result.status is BroadcastStatus.SENT
            and result.message_id
            and self.messages is not None
        ):
            lane.pending.append((time.time(), result.message_id))
            if len(lane.pending) > _PENDING:  # no receipts come: the oldest go unjudged
                lane.pending.popleft()
        if self.messages is not None:
            overdue = time.time() - self.pace.undelivered_after
            still: deque[tuple[float, str]] = deque()
            for sent_at, message_id in lane.pending:
                record = self.messages.get(message_id)
                status = None if record is None else record.status
                if status not in (None, MessageStatus.SENT):
                    lane.has_receipts = True
                if status is MessageStatus.FAILED:
                    failed += 1
                elif status in (None, MessageStatus.SENT):
                    still.append((sent_at, message_id))
            lane.pending = deque()
            for sent_at, message_id in still:
                if lane.has_receipts and sent_at < overdue:
                    undelivered += 1
                else:
                    lane.pending.append((sent_at, message_id))
        health = lane.health = self.health[lane.instance] = attrs.evolve(
            health, attempts=health.attempts + 1, failed=failed, undelivered=undelivered
        )
        floor = self.pace.min_health
        if (
            floor is not None
            and lane.paused is None
            and health.attempts >= self.pace.health_sample
            and health.score < floor
        ):
            lane.paused = self.paused[lane.instance] = (
                f"instance {lane.instance}'s health {health.score:.2f} is below {floor:g} "
                f"({health.why()}); a re-run resumes it"
            )

    def _result(
        self,
        item: Judged,
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

    def _settled(self, item: Judged, entry: MessageEntry | None) -> BroadcastResult | None:
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
                    "not resent",
                    request=item.call,
                ),
            )
        return None

    async def deliver(self, lane: _Lane, item: Judged) -> BroadcastResult:
        if lane.paused is not None:
            return self._result(item, BroadcastStatus.PAUSED, error=_paused(lane))
        if self.journal is not None and self.rerun:
            # Skip what is settled before waiting a turn for it (the claim checks again).
            entry = await self.journal.message_entry(self.campaign, item.key)
            settled = self._settled(item, entry)
            if settled is not None:
                return settled
        # A 429 holds the whole instance for as long as the server asked; another refusal the
        # retry policy allows (nothing was sent) is tried again after its backoff.
        throttled = retried = 0
        while True:
            await lane.pacer.turn()
            if lane.paused is not None:
                return self._result(item, BroadcastStatus.PAUSED, error=_paused(lane))
            outcome = await self._send_once(lane, item, first_try=throttled + retried == 0)
            if isinstance(outcome, BroadcastResult):
                return outcome
            if _holds_the_instance(outcome):
                throttled += 1
                if throttled >= _THROTTLED_TRIES:
                    return self._result(item, BroadcastStatus.FAILED, error=outcome)
                lane.pacer.pause(self.policy.delay_after(outcome, throttled))
            else:
                retried += 1
                if retried > self.policy.max_retries:
                    return self._result(item, BroadcastStatus.FAILED, error=outcome)
                await asyncio.sleep(self.policy.delay_after(outcome, retried))

    async def _send_once(
        self, lane: _Lane, item: Judged, *, first_try: bool
    ) -> BroadcastResult | WachatError:
        """One send; the refusal when it may be tried again (nothing was sent: recorded as
        failed, so that a run that stops here leaves it for a re-run)."""
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
        await lane.pacer.hold()
        try:
            # No retries inside the call: a 429 must hold every worker of the instance, not
            # just this one, so the lane does the retrying.
            try:
                sent = await self.sends.send_prepared(item.call, item.body, max_retries=0)
            finally:
                lane.pacer.answered()
        except OutcomeUnknownError as exc:
            self._record(item, UNKNOWN, error=exc)
            return self._result(item, BroadcastStatus.UNKNOWN, error=exc)
        except WachatError as exc:  # the server refused it, or it never left: not sent
            self._record(item, FAILED, error=exc)
            if _holds_the_instance(exc) or self.policy.allows(exc, idempotent=False):
                return exc
            if isinstance(exc, BadRequestError | ConflictError | NotFoundError) and (
                await self._disconnected(lane, exc)
            ):
                return self._result(item, BroadcastStatus.PAUSED, error=exc)
            return self._result(item, BroadcastStatus.FAILED, error=exc)
        self._record(item, DONE, message_id=sent.message_id)
        if self.messages is not None and sent.message_id:
            self.messages.sent(
                sent.message_id,
                instance=lane.instance,
                recipient=item.recipient,
                campaign=self.campaign,
                key=item.key,
            )
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
        lane.health = self.health[lane.instance] = attrs.evolve(
            lane.health, disconnects=lane.health.disconnects + 1
        )
        lane.paused = self.paused[lane.instance] = reason
        return True

    def _record(
        self,
        item: Judged,
        state: str,
        *,
        message_id: str | None = None,
        error: WachatError | None = None,
    ) -> None:
        if self.journal is not None:
            self.journal.record_message(
                self.campaign,
                item.key,
                state,
                message_id=message_id,
                error=None if error is None else error_text(error),
            )

    def on_hold(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress())

    def progress(self) -> BroadcastProgress:
        # Live read-only views: a copy per result would cost O(instances) each time.
        return BroadcastProgress(
            MappingProxyType(self.counts),
            MappingProxyType(self.sent_by_instance),
            MappingProxyType(self.paused),
            MappingProxyType(self.waiting),
            MappingProxyType(self.health),
        )


def _holds_the_instance(refusal: WachatError) -> bool:
    """A 429, or another "not now" that says how long (a 503 with Retry-After): the server
    asked the instance to wait, so all its workers do."""
    return isinstance(refusal, RateLimitError) or (
        refusal.failure is FailureClass.THROTTLED
        and getattr(refusal, "retry_after", None) is not None
    )


def _paused(lane: _Lane) -> InvalidRequestError:
    return InvalidRequestError(f"not sent: {lane.paused}; a re-run sends it once it is back")


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
    messages: MessageLog | None = None,
) -> AsyncIterator[BroadcastResult]:
    """The engine behind ``messages.send_many`` (see there)."""
    campaign = check.text("campaign", campaign).strip()
    if not isinstance(pace, Pace):
        raise InvalidRequestError(f"pace must be a Pace, got {type(pace).__name__}")
    check.flag("resend_unknown", resend_unknown)
    opted_out = opt_out_numbers(opt_out)
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
        policy=settings.retry,
        messages=messages,
    )
    if messages is not None and log is not None:
        messages.attach(log)  # receipts arriving during the run reach the journal
    run.rerun = log is not None and await log.has_messages(campaign)
    run.on_progress = on_progress
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
                prepared = run.judge(index, given)
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
            if messages is not None:
                messages.detach(log)
            await log.close()
