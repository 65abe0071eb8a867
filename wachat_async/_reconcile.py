"""Did this create happen, and did it happen twice? The one place that answers it.

Creating an instance is not idempotent and the API has no idempotency key, so when a create's
outcome is in doubt (a timeout, a reset, an unreadable 2xx) the client looks instead of
resending: exactly one instance with that friendly name created since the attempt began is
the result; none (looked at twice, a settle delay apart, since a request that timed out on the
client may still land) means it did not happen and may be resent; more than one, or a list
that cannot be read, means nobody can tell, and :class:`OutcomeUnknownError` says so.

A lost create can still land after that second look, and the resent one then makes a second
instance of the name. So after a resent create succeeds, :meth:`Reconciler.sweep` looks once
more (after the settle delay) and deletes any other instance of the name created since the
first attempt began, unless it is connected (someone scanned it: never deleted).

``createdAt`` is compared with the moment the attempt began, corrected by the server's clock
(its ``Date`` header) and a little slack.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from . import _decode
from ._executor import Doubt, Executor
from ._request import Call
from .errors import (
    OutcomeUnknownError,
    ResponseValidationError,
    UnreadableOutcomeError,
    WachatError,
)
from .models import ConnectionState, InstanceInfo

logger = logging.getLogger("wachat_async")

#: Slack when comparing the server's ``createdAt`` with when an attempt began: the skew estimate
#: from the ``Date`` header has one-second resolution, and requests take time.
CLOCK_SLACK = 2.0

#: The calls reconciliation is about, and the ones it makes.
CREATE_INSTANCE = Call("instances.create", "POST", "/instance/create")
LIST_INSTANCES = Call("instances.list", "GET", "/instance/list")
DELETE_INSTANCE = Call("instances.delete", "DELETE", "/instance/delete")


def already_gone() -> None:
    """A delete's result when its instance is gone after an attempt that may have landed."""
    return


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _surely_unconnected(info: InstanceInfo) -> bool:
    """Whether the list says plainly that nobody has scanned this instance."""
    if info.is_connected is not None:
        return not info.is_connected
    return info.state in (ConnectionState.CLOSE, ConnectionState.CONNECTING)


class Reconciler:
    """Finds the instance a doubtful create made, and the duplicates a late one left."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def settle(self, doubt: Doubt) -> InstanceInfo | None:
        """The instance a doubtful create made, or None when it proved not to have happened
        (it may then be resent). Raises OutcomeUnknownError when nobody can tell, and
        UnreadableOutcomeError when the server said it did but its answer was unreadable."""
        call, failure, processed = doubt.request.call, doubt.failure, doubt.processed
        friendly = str(doubt.request.body["instanceName"])
        settings = self._executor.settings
        try:
            if not settings.reconcile:
                raise OutcomeUnknownError(
                    f"{call.operation} {friendly!r} may or may not have happened "
                    f"({failure}); reconciliation is off, so it was not resent.",
                    request=call,
                    cause=failure,
                    attempts=failure.attempts,
                )
            # A 2xx means nothing is still in flight: no need to wait for it to settle.
            settle = 0.0 if processed else settings.settle_delay
            found = await self.find(
                call, friendly, since=doubt.started, settle_until=time.time() + settle
            )
            if found is not None or not processed:
                return found
            raise OutcomeUnknownError(
                f"{call.operation} {friendly!r}: no such instance is listed.",
                request=call,
                cause=failure,
                attempts=failure.attempts,
            )
        except OutcomeUnknownError as unknown:
            if not (processed and isinstance(failure, ResponseValidationError)):
                raise
            unreadable = UnreadableOutcomeError(
                f"Wachat answered {call.operation} {friendly!r} with success, but the answer "
                f"could not be read ({failure}) nor the instance identified ({unknown}); it "
                "was not resent.",
                field=failure.field,
                body=failure.body,
                status_code=failure.status_code,
                request=call,
                candidates=unknown.candidates,
                cause=failure,
                attempts=failure.attempts,
            )
        raise unreadable

    async def find(
        self, call: Call, friendly: str, *, since: float, settle_until: float
    ) -> InstanceInfo | None:
        """The one instance named ``friendly`` created since ``since`` (wall-clock seconds),
        looking again at ``settle_until`` when there is none yet. Raises OutcomeUnknownError
        when several match or the list cannot be read."""
        try:
            candidates = await self._appeared_since(friendly, since)
            if not candidates and (wait := settle_until - time.time()) > 0:
                await asyncio.sleep(wait)
                candidates = await self._appeared_since(friendly, since)
        except WachatError as exc:
            failure: WachatError | None = exc
        else:
            failure = None
        if failure is not None:
            raise OutcomeUnknownError(
                f"{call.operation} {friendly!r} may or may not have happened, and listing "
                f"instances to find out failed too ({failure}).",
                request=call,
                cause=failure,
                attempts=failure.attempts,
            )
        if len(candidates) > 1:
            raise OutcomeUnknownError(
                f"{call.operation} {friendly!r}: {len(candidates)} instances with that name "
                "appeared; not guessing which one is yours.",
                request=call,
                candidates=candidates,
            )
        return candidates[0] if candidates else None

    async def sweep(self, friendly: str, *, keep: str, since: float) -> tuple[str, ...]:
        """After a resent create of ``friendly`` returned ``keep`` (an API name): look once more,
        after the settle delay, and delete every other instance of that name created since
        ``since`` (when the first attempt began) that is surely not connected. Returns the API
        names deleted. A failure to look or to delete is logged, never raised: the create
        itself succeeded."""
        await asyncio.sleep(self._executor.settings.settle_delay)
        try:
            late = [
                info
                for info in await self._appeared_since(friendly, since)
                if info.api_instance_name != keep
            ]
        except WachatError as exc:
            logger.warning("instances.create %r: could not look for duplicates (%s)", friendly, exc)
            return ()
        deleted: list[str] = []
        for info in late:
            name = info.api_instance_name
            if not _surely_unconnected(info):
                logger.warning(
                    "instances.create %r: %s is a duplicate, but connected: left as it is",
                    friendly,
                    name,
                )
                continue
            try:
                await self._executor.run(
                    DELETE_INSTANCE,
                    _decode.nothing,
                    params={"instanceName": name},
                    done_if_gone=already_gone,
                )
            except WachatError as exc:
                logger.warning(
                    "instances.create %r: could not delete the duplicate %s (%s)",
                    friendly,
                    name,
                    exc,
                )
                continue
            logger.warning(
                "instances.create %r: a lost attempt landed late as %s; deleted it (kept %s)",
                friendly,
                name,
                keep,
            )
            deleted.append(name)
        return tuple(deleted)

    async def _appeared_since(self, friendly: str, since: float) -> list[InstanceInfo]:
        infos, server_skew = await self._executor.run(LIST_INSTANCES, _decode.instances_and_clock)
        threshold = since + server_skew - CLOCK_SLACK
        return [
            info
            for info in infos
            if friendly in (info.instance_name, info.display_name)
            and (info.created_at is None or _epoch(info.created_at) >= threshold)
        ]
