"""The rules a broadcast judges each spec by as it reads it, and the plan they make of a whole
input: how many messages each instance would send, which specs would not be sent and why, and
how long the pace makes it take.

One place for the rules: ``send_many`` applies them (:class:`Judge`) as it reads its specs; a
dry run and an ETA read the same plan (:func:`plan`) without sending anything. A spec is
checked (its number normalised, its message built), its key (by default
``campaign:instance:recipient``) must not repeat in the input, and its recipient must not be
in the opt-out list.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import Any

import attrs

from .. import _validate as check
from .._request import Call
from ..errors import InvalidRequestError
from ..models import MessagePayload
from ._pool import END, reader
from .campaign import BroadcastResult, BroadcastStatus, Pace, SendSpec

__all__ = ["BroadcastPlan", "Judge", "Judged", "opt_out_number", "opt_out_numbers", "plan"]

#: Checks and builds one message: ``(instance, recipient, message)`` -> the call and its body
#: (``messages.send_request``, or the client's ``prepare``).
Prepare = Callable[[str, str, MessagePayload], tuple[Call, dict[str, Any]]]

#: The plan lets other tasks (Ctrl-C) in after this many specs.
_YIELD_EVERY = 1000


@attrs.define
class Judged:
    """A spec that is to be sent: checked, with its key, and the request that sends it."""

    index: int
    spec: Any
    key: str
    instance: str
    recipient: str
    call: Call
    body: dict[str, Any]


class Judge:
    """The rules, applied to one spec at a time in input order: a :class:`Judged` spec, or
    the result of one that is not sent (invalid, a repeated key, opted out)."""

    def __init__(self, prepare: Prepare, *, campaign: str, opt_out: frozenset[str]) -> None:
        self.prepare = prepare
        self.campaign = campaign
        self.opt_out = opt_out
        #: The hash of each key read so far, with the index of its spec.
        self.seen: dict[int, int] = {}

    def __call__(self, index: int, given: Any) -> Judged | BroadcastResult:
        try:
            if isinstance(given, Mapping):
                given = SendSpec(**given)
            if not isinstance(given, SendSpec):
                raise InvalidRequestError(
                    f"a spec must be a SendSpec or a mapping, got {type(given).__name__}"
                )
            call, body = self.prepare(given.instance, given.recipient, given.message)
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
        except (AttributeError, KeyError, ValueError) as exc:
            # A payload built by hand with the wrong parts (a list row given as a plain dict):
            # this spec is bad, the broadcast goes on.
            error = InvalidRequestError(
                f"the message is malformed ({type(exc).__name__}: {exc}); build it from the "
                "message classes (ListSection, ListRow, ...)"
            )
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
        return Judged(index, given, key, instance, recipient, call, body)


def opt_out_number(field: str, value: Any) -> str:
    """A number of an opt-out list, as sends are checked, except that the ``00`` call prefix
    is read as ``+``: leaving out someone who wrote ``0049...`` can only send less."""
    try:
        return check.number(field, value)
    except InvalidRequestError:
        # The separators the number check drops, dropped the same way.
        spelled = check.NUMBER_NOISE.sub("", value) if isinstance(value, str) else ""
        if not spelled.startswith("00"):
            raise
    return check.number(field, "+" + spelled[2:])


def opt_out_numbers(numbers: Iterable[str] | None) -> frozenset[str]:
    if numbers is None:
        return frozenset()
    if isinstance(numbers, str):
        raise InvalidRequestError("opt_out must be a collection of numbers, not one string")
    return frozenset(opt_out_number("opt_out", n) for n in numbers)


@attrs.define
class BroadcastPlan:
    """What a broadcast of an input would do: messages per instance (and so how long the pace
    makes it take), and how many specs would not be sent, by status."""

    campaign: str
    pace: Pace
    #: Specs read.
    specs: int = 0
    #: Messages to send, by instance (in the order instances first appear).
    messages: dict[str, int] = attrs.Factory(dict)
    #: Specs that would not be sent, by status (invalid, opted out).
    not_sent: Counter[BroadcastStatus] = attrs.Factory(Counter)

    @property
    def total(self) -> int:
        return sum(self.messages.values())

    def projected_seconds(self, instance: str | None = None) -> float:
        """How long ``instance``'s messages take at the pace; without one, the whole run's
        (its slowest instance's). Waits the server will ask for are not known in advance."""
        if instance is not None:
            return self.pace.projected_seconds(self.messages.get(instance, 0))
        return max(map(self.pace.projected_seconds, self.messages.values()), default=0.0)

    def count(self, judged: Judged | BroadcastResult) -> None:
        self.specs += 1
        if isinstance(judged, Judged):
            self.messages[judged.instance] = self.messages.get(judged.instance, 0) + 1
        else:
            self.not_sent[judged.status] += 1


async def plan(
    specs: Iterable[Any] | AsyncIterable[Any],
    *,
    campaign: str,
    prepare: Prepare,
    pace: Pace | None = None,
    opt_out: Iterable[str] | None = None,
    on_spec: Callable[[Judged | BroadcastResult], None] | None = None,
) -> BroadcastPlan:
    """The plan of a broadcast of ``specs``, judged by ``send_many``'s rules; nothing is sent.
    ``on_spec`` sees each spec's verdict as it is read (a preview, the rows not sent)."""
    campaign = check.text("campaign", campaign).strip()
    judge = Judge(prepare, campaign=campaign, opt_out=opt_out_numbers(opt_out))
    result = BroadcastPlan(campaign, Pace() if pace is None else pace)
    read = reader(specs)
    index = 0
    while (given := await read()) is not END:
        judged = judge(index, given)
        result.count(judged)
        if on_spec is not None:
            on_spec(judged)
        index += 1
        if index % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
    return result
