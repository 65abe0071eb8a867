"""``wachat instances dedupe [--journal FILE] [--delete]``: the friendly names held by more
than one instance (a create that landed after it was resent), one line each; with
``--delete``, the extras that are not connected are deleted.

Exit status 0 when no name is held twice any more (none was, or every extra was deleted); 1
while duplicates remain (listed without ``--delete``, or connected extras, which are never
deleted), so a script can tell.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..bulk.dedupe import DuplicateGroup, is_connected
from ..models import InstanceInfo
from .connect import connect
from .outcome import EXIT_FAILED, EXIT_OK
from .output import Output
from .parser import Parser, Subcommands, add_command, subcommands_of


def add_commands(commands: Subcommands, common: Parser) -> None:
    """``dedupe`` among the ``instances`` operations (added after them)."""
    dedupe = add_command(
        subcommands_of(commands, "instances"),
        common,
        "dedupe",
        "list friendly names held by more than one instance; --delete removes the extras",
        description="List every friendly name that more than one instance holds, with the one "
        "kept: the one --journal recorded, else a connected one, else the oldest. With "
        "--delete, the others are deleted, except connected ones (a phone is paired to them). "
        "Exit status 0 when no name is held twice any more, 1 while duplicates remain.",
    )
    dedupe.add_argument(
        "--journal",
        type=Path,
        metavar="FILE",
        help="a provisioning journal: keep the instance it recorded for each name",
    )
    dedupe.add_argument(
        "--delete", action="store_true", help="delete the extras that are not connected"
    )
    dedupe.set_defaults(run=run_dedupe)


async def run_dedupe(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wa:
        groups = await wa.instances.dedupe(delete=args.delete, journal=args.journal)
    left = sum(len(g.left) for g in groups)
    for group in groups:
        if out.json:
            out.document(duplicate_json(group))
        else:
            out.say(duplicate_line(group))
    deleted = sum(len(g.deleted) for g in groups)
    if out.json:
        out.document({"summary": {"names": len(groups), "deleted": deleted, "left": left}})
    elif not groups:
        out.say("No friendly name is held by more than one instance.")
    else:
        summary = f"{len(groups)} name(s) held by more than one instance"
        if deleted:
            summary += f"; {deleted} extra instance(s) deleted"
        if left and args.delete:
            summary += f"; {left} left: connected, so never deleted (log them out first)"
        elif left:
            summary += f"; {left} extra instance(s); add --delete to delete the unconnected ones"
        out.say(summary + ".")
    return EXIT_FAILED if left else EXIT_OK


def _shown(info: InstanceInfo) -> str:
    return info.api_instance_name + (" (connected)" if is_connected(info) else "")


def duplicate_line(group: DuplicateGroup) -> str:
    """One line: the name, the one kept, then what became of the others."""
    parts = [f"{group.instance_name}: keep {_shown(group.keep)}"]
    if group.deleted:
        parts.append("deleted " + ", ".join(group.deleted))
    if group.left:
        parts.append("extra " + ", ".join(_shown(i) for i in group.left))
    return "; ".join(parts)


def duplicate_json(group: DuplicateGroup) -> dict[str, object]:
    return {
        "instance_name": group.instance_name,
        "keep": group.keep.api_instance_name,
        "keep_connected": is_connected(group.keep),
        "extras": [i.api_instance_name for i in group.extras],
        "deleted": list(group.deleted),
        "left": [i.api_instance_name for i in group.left],
    }
