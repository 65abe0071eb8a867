"""What a broadcast is made of and what it reports: the specs (:class:`SendSpec`), the pace of
each instance (:class:`Pace`), a template's rendering, and the values a run hands back
(:class:`BroadcastResult`, :class:`BroadcastProgress`, :class:`InstanceWait`). The engine that
sends them is :mod:`wachat_async.bulk.broadcast`; the rules each spec is judged by, and the plan
they make of an input, are :mod:`wachat_async.bulk.plan`."""

from __future__ import annotations

import enum
import math
import string
from collections.abc import Mapping
from typing import Any

import attrs

from .. import _validate as check
from ..errors import InvalidRequestError, WachatError
from ..models import MessagePayload

__all__ = [
    "BroadcastProgress",
    "BroadcastResult",
    "BroadcastStatus",
    "Health",
    "InstanceWait",
    "Pace",
    "SendSpec",
    "WaitReason",
    "render_template",
]


def _share(instance: Any, field: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
    if not ok:
        raise InvalidRequestError(f"{field.name} must be a number from 0 to 1; got {value!r}")


@attrs.frozen(kw_only=True)
class Health:
    """One instance's health during a broadcast: how its sends went.

    ``failed`` counts sends the server refused and those a receipt said failed;
    ``undelivered`` those still not delivered ``Pace.undelivered_after`` seconds after they
    were sent (counted only once some receipt of the instance arrived in this run: without
    receipts, nothing is known to be undelivered); ``disconnects`` the times it was found not
    connected. The score is the share of sends that neither failed nor stayed undelivered.
    """

    attempts: int = 0
    failed: int = 0
    undelivered: int = 0
    disconnects: int = 0

    @property
    def score(self) -> float:
        """From 0 (every send failed or stayed undelivered) to 1 (none did, or none yet)."""
        if not self.attempts:
            return 1.0
        return max(0.0, 1.0 - (self.failed + self.undelivered) / self.attempts)

    def why(self) -> str:
        return (
            f"{self.failed} of {self.attempts} sends failed, {self.undelivered} undelivered, "
            f"{self.disconnects} disconnect(s)"
        )


@attrs.frozen(kw_only=True)
class Pace:
    """How fast one instance (one WhatsApp number) sends. Bursts get numbers restricted or
    banned, so the default is conservative: one message at a time, at least 5 s apart plus up to
    5 s of random jitter (about 8 a minute per number). Several instances send in parallel,
    each at its own pace.

    ``hourly`` and ``daily`` cap one instance's messages in any rolling hour and day (counting
    what the journal records of earlier runs); ``warmup_messages`` ramps a new number up: its
    first messages are spaced from ``warmup_interval`` down to ``interval``.

    The spacing is kept where the gateway counts it, at the server: with one message in flight
    per instance (``per_instance`` 1), each gap starts when the previous send is answered, so a
    send slow to arrive never arrives closer to the next. With several in flight, it is their
    starts that are spaced (a send delayed on its way may arrive closer to the next).
    """

    #: Seconds at least between two messages of one instance (at the server: see above).
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
    #: Pause an instance whose :class:`Health` score falls below this (0 to 1; None: never).
    min_health: float | None = attrs.field(default=None, validator=_share)
    #: How many sends of an instance its health is judged on, at least, before it may pause.
    health_sample: int = attrs.field(default=10, validator=check.attribute(check.positive_int))
    #: Seconds after which a message sent and never delivered counts against its instance
    #: (only once receipts arrive for it: see :class:`Health`).
    undelivered_after: float = attrs.field(default=300.0, validator=check.attribute(check.seconds))

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
        """Expected time for one instance to send ``messages`` at this pace (caps included).
        With one in flight, each message takes its round trip more (a gap starts at the
        answer); that is not known in advance, nor is it counted here."""
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


class WaitReason(enum.StrEnum):
    """What an instance is waiting for before its next message."""

    #: The pace's spacing (interval, jitter, warm-up).
    PACED = "paced"
    #: The server asked to wait (a 429 and its Retry-After): every worker of the instance waits.
    THROTTLED = "throttled"
    #: An hourly or daily cap is reached.
    CAPPED = "capped"


@attrs.frozen
class InstanceWait:
    """An instance's wait: why, and until when."""

    reason: WaitReason
    #: When it ends: wall-clock Unix seconds (``time.time()``).
    until: float


@attrs.frozen
class BroadcastProgress:
    """Counts so far, handed to ``on_progress`` after each result, and when an instance starts
    waiting on the server or on a cap (live, read-only views: they stay current between
    calls too)."""

    #: Results so far, by status.
    counts: Mapping[BroadcastStatus, int]
    #: Messages sent now, by instance.
    sent_by_instance: Mapping[str, int]
    #: Instances paused, with why.
    paused: Mapping[str, str]
    #: Instances waiting now for their next turn, with why and until when.
    waiting: Mapping[str, InstanceWait] = attrs.Factory(dict)
    #: Each instance's :class:`Health` so far.
    health: Mapping[str, Health] = attrs.Factory(dict)

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
