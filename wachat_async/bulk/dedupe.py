"""Duplicates: friendly names held by more than one instance, and the sweep that heals them.

The API has no idempotency key. A create that the server processes only after the client has
looked for it (twice, a settle delay apart) and sent it again leaves the account with two
instances of one friendly name. :func:`dedupe` lists every such name as a
:class:`DuplicateGroup` and, asked to, deletes the extras that are not connected. A connected
extra has a phone paired to it: it is never deleted, only reported.

Which instance of a name is kept: the one a journal recorded for it (what a provisioning run
handed out), else a connected one, else the oldest (by creation time, then id).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Collection, Iterable, Mapping
from typing import Protocol

import attrs

from .._config import Settings
from ..errors import ConflictError, InvalidRequestError, JournalError, NotFoundError
from ..models import ConnectionState, InstanceInfo
from .journal import DONE, Journal

__all__ = ["DuplicateGroup", "dedupe", "journal_choices"]

logger = logging.getLogger("wachat_async")


@attrs.frozen
class DuplicateGroup:
    """A friendly name held by more than one instance: the one kept, the others, and which of
    those were deleted (API names)."""

    instance_name: str
    keep: InstanceInfo
    extras: tuple[InstanceInfo, ...]
    deleted: tuple[str, ...] = ()

    @property
    def left(self) -> tuple[InstanceInfo, ...]:
        """The extras still there (connected ones, or all of them without ``delete``)."""
        return tuple(e for e in self.extras if e.api_instance_name not in self.deleted)

    @property
    def resolved(self) -> bool:
        """Only the kept instance holds the name now."""
        return not self.left


class Instances(Protocol):
    """What the sweep needs of ``wa.instances``."""

    async def list(self) -> list[InstanceInfo]: ...

    async def delete(self, name: str) -> None: ...


def friendly_name(info: InstanceInfo) -> str | None:
    return info.instance_name or info.display_name


def is_connected(info: InstanceInfo) -> bool:
    return bool(info.is_connected) or info.state is ConnectionState.OPEN


def _age(info: InstanceInfo) -> tuple[float, float, str]:
    """Oldest first: creation time, then id (an instance listed without either comes last)."""
    created = info.created_at.timestamp() if info.created_at is not None else math.inf
    return (created, info.id if info.id is not None else math.inf, info.api_instance_name)


def _kept(same_name: list[InstanceInfo], recorded: str | None) -> InstanceInfo:
    by_age = sorted(same_name, key=_age)
    for info in by_age:
        if info.api_instance_name == recorded:
            return info
    return next((i for i in by_age if is_connected(i)), by_age[0])


async def journal_choices(
    journal: str | os.PathLike[str] | Journal | None, settings: Settings
) -> dict[str, str]:
    """The API name a journal recorded for each friendly name it created."""
    if journal is None:
        return {}
    if isinstance(journal, Journal):
        entries = await journal.provision_entries()
    elif not await asyncio.to_thread(os.path.isfile, journal):  # opening would create it
        where = str(journal)
        raise JournalError(f"no journal at {where}", path=where)
    else:
        async with await Journal.open(
            journal, api_key=settings.api_key, base_url=settings.base_url
        ) as opened:
            entries = await opened.provision_entries()
    return {
        e.instance_name: e.api_instance_name
        for e in entries
        if e.state == DONE and e.api_instance_name is not None
    }


async def dedupe(
    instances: Instances,
    *,
    delete: bool,
    keep: Mapping[str, str],
    names: Collection[str] | None = None,
    existing: Collection[str] = (),
) -> list[DuplicateGroup]:
    """Every friendly name (of ``names``, when given) held by more than one instance; ``keep``
    maps a friendly name to the API name to keep. With ``delete``, the extras that are not
    connected are deleted (each logged); a connected one is left and reported. Instances
    named in ``existing`` (API names) are left out altogether: a run's sweep touches only
    what appeared during the run."""
    if not isinstance(delete, bool):
        raise InvalidRequestError(f"delete must be True or False, got {delete!r}")
    by_name: dict[str, list[InstanceInfo]] = {}
    for info in await instances.list():
        name = friendly_name(info)
        if info.api_instance_name in existing:
            continue
        if name is not None and (names is None or name in names):
            by_name.setdefault(name, []).append(info)
    groups: list[DuplicateGroup] = []
    for name, same_name in sorted(by_name.items()):
        if len(same_name) < 2:
            continue
        kept = _kept(same_name, keep.get(name))
        extras = tuple(sorted((i for i in same_name if i is not kept), key=_age))
        deleted = await _delete_unconnected(instances, name, kept, extras) if delete else ()
        groups.append(DuplicateGroup(name, kept, extras, deleted))
    return groups


async def _delete_unconnected(
    instances: Instances, name: str, kept: InstanceInfo, extras: Iterable[InstanceInfo]
) -> tuple[str, ...]:
    deleted: list[str] = []
    for extra in extras:
        api_name = extra.api_instance_name
        if is_connected(extra):
            logger.warning(
                "duplicate instance %s of %r is connected: not deleted (kept %s)",
                api_name,
                name,
                kept.api_instance_name,
            )
            continue
        try:
            await instances.delete(api_name)
        except NotFoundError:
            pass  # gone already: what the sweep wanted
        except ConflictError:  # connected since it was listed: a phone is paired now
            logger.warning(
                "duplicate instance %s of %r connected meanwhile: not deleted", api_name, name
            )
            continue
        logger.warning(
            "deleted duplicate instance %s of %r (kept %s)", api_name, name, kept.api_instance_name
        )
        deleted.append(api_name)
    return tuple(deleted)
