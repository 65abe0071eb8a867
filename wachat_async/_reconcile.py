"""Did this create happen? The one place that answers it.

Creating an instance is not idempotent and the API has no idempotency key, so when a create's
outcome is ambiguous (a timeout, a reset, an unreadable 2xx) the client looks instead of
resending: exactly one instance with that friendly name created since the attempt began is
the result; none (looked at twice, a settle delay apart, since a request that timed out on the
client may still land) means it did not happen and may be resent; more than one, or a list
that cannot be read, means nobody can tell, and :class:`OutcomeUnknownError` says so.

``createdAt`` is compared with the moment the attempt began, corrected by the server's clock
(its ``Date`` header) and a little slack.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from . import _decode
from ._executor import NOT_DONE, Executor, Found, NotDone, Reconcile
from ._transport import Call
from .errors import (
    OutcomeUnknownError,
    ResponseValidationError,
    UnreadableOutcomeError,
    WachatError,
)
from .models import InstanceInfo

T = TypeVar("T")

#: Slack when comparing the server's ``createdAt`` with when an attempt began: the skew estimate
#: from the ``Date`` header has one-second resolution, and requests take time.
CLOCK_SLACK = 2.0

#: The calls reconciliation is about, and the one it makes.
CREATE_INSTANCE = Call("instances.create", "POST", "/instance/create")
LIST_INSTANCES = Call("instances.list", "GET", "/instance/list")


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class Reconciler:
    """Finds the instance an ambiguous create may have made."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

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

    async def _appeared_since(self, friendly: str, since: float) -> list[InstanceInfo]:
        infos, server_skew = await self._executor.run(LIST_INSTANCES, _decode.instances_and_clock)
        threshold = since + server_skew - CLOCK_SLACK
        return [
            info
            for info in infos
            if friendly in (info.instance_name, info.display_name)
            and (info.created_at is None or _epoch(info.created_at) >= threshold)
        ]

    def hook(self, build: Callable[[InstanceInfo], Awaitable[T]]) -> Reconcile[T]:
        """The executor's ambiguity hook for creates: ``build`` turns the instance found into
        the call's result (fetching its QR code afresh). The friendly name is the one the
        call's body carries."""
        settings = self._executor.settings

        async def reconcile(
            call: Call, body: Any, failure: WachatError, started: float, processed: bool
        ) -> Found[T] | NotDone:
            friendly = str(body["instanceName"])
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
                    call, friendly, since=started, settle_until=time.time() + settle
                )
                if found is not None:
                    return Found(await build(found))
                if not processed:
                    return NOT_DONE
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

        return reconcile

    async def recover(
        self,
        friendly: str,
        started_at: float,
        build: Callable[[InstanceInfo], Awaitable[T]],
    ) -> T | None:
        """Did an earlier, interrupted run create ``friendly`` (its create began at
        ``started_at``)? Its result, built afresh, or None if it did not."""
        settings = self._executor.settings
        found = await self.find(
            CREATE_INSTANCE,
            friendly,
            since=started_at,
            settle_until=started_at + settings.timeout + settings.settle_delay,
        )
        return None if found is None else await build(found)
