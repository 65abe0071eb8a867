"""``wachat send``: send messages from a connected instance.

Each kind of sending is one sub-command, added in :func:`add_commands`: ``send text`` here,
``send broadcast`` (many opted-in recipients from a CSV, paced, journaled) in a module of its
own, :mod:`.broadcast`, the way ``provision`` sits beside ``instances``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from . import broadcast
from .connect import connect
from .outcome import EXIT_OK, interrupted_as
from .output import Output, value
from .parser import Parser, Subcommands, add_command


def add_text(kinds: Subcommands, common: Parser) -> None:
    text = add_command(kinds, common, "text", "send a text message; prints its message id")
    text.add_argument("name", help="API instance name (t1_..._store)")
    text.add_argument("number", help="recipient: digits with country code (628111222333)")
    text.add_argument("message", help="the text")
    text.set_defaults(run=run_text)


#: The kinds of ``wachat send``, each adding its sub-command.
_KINDS: tuple[Callable[[Subcommands, Parser], None], ...] = (add_text, broadcast.add_command)


def add_commands(commands: Subcommands, common: Parser) -> None:
    group = add_command(commands, common, "send", "send messages")
    kinds = group.add_subparsers(dest="kind", required=True, metavar="KIND")
    for add in _KINDS:
        add(kinds, common)


async def run_text(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wa:
        with interrupted_as(
            "Interrupted while sending: the message may or may not have gone out "
            "(it is never sent twice by itself)."
        ):
            result = await wa.messages.send_text(args.name, args.number, args.message)
    if out.json:
        out.document(result)
    elif out.interactive:
        out.say("Sent; message id ", value(result.message_id or "(none given)"))
    else:
        out.record({"message_id": result.message_id, "status_code": result.status_code})
    return EXIT_OK
