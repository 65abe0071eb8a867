"""``wachat broadcast report CAMPAIGN [--journal FILE]``: what became of a broadcast's messages,
per instance, from its journal: sent (accepted by the server), delivered, read and failed.

Delivered and read come from the receipts (``messages.update``) written to the journal: by the
broadcast for those that arrived while it ran, by ``wa.messages.save_receipts(journal)`` for
later ones. A message read counts as delivered too. Failed counts the messages refused at
send and those a receipt said failed. The journal is bound to one account: the API key is
needed to open it (nothing is sent).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .._config import Settings
from ..bulk.journal import Journal, ReceiptCounts
from .connect import connect
from .constants import JOURNAL_NAME
from .outcome import EXIT_FAILED, EXIT_OK, CliError
from .output import Output
from .parser import Parser, Subcommands, add_command

#: The columns of a report, as printed.
COLUMNS = ["instance", "sent", "delivered", "read", "failed"]


def add_commands(commands: Subcommands, common: Parser) -> None:
    group = add_command(commands, common, "broadcast", "what became of a broadcast")
    operations = group.add_subparsers(dest="operation", required=True, metavar="OPERATION")
    report = add_command(
        operations,
        common,
        "report",
        "per instance: sent, delivered, read, failed",
        description="Per instance of CAMPAIGN, from its journal: messages sent (accepted by "
        "the server), delivered and read (from the receipts recorded; read counts as "
        "delivered too), and failed (refused at send, or a receipt said so).",
    )
    report.add_argument("campaign", metavar="CAMPAIGN", help="the broadcast's --campaign")
    report.add_argument(
        "--journal",
        type=Path,
        metavar="FILE",
        help=f"the broadcast's journal (default: ./{JOURNAL_NAME})",
    )
    report.set_defaults(run=run_report)


async def receipt_counts(journal: Path, settings: Settings, campaign: str) -> list[ReceiptCounts]:
    """The journal's counts for ``campaign``, per instance."""
    async with await Journal.open(
        journal, api_key=settings.api_key, base_url=settings.base_url
    ) as log:
        return await log.receipt_counts(campaign)


def show_counts(out: Output, counts: Sequence[ReceiptCounts], *, title: str) -> None:
    out.table(
        [{c: getattr(row, c) for c in COLUMNS} for row in counts],
        COLUMNS,
        title=title,
        whole=["instance"],
    )


async def run_report(args: argparse.Namespace, out: Output) -> int:
    if args.sandbox:
        raise CliError("a report reads a journal; --sandbox has none: leave it out")
    campaign = args.campaign.strip()
    if not campaign:
        raise CliError("CAMPAIGN must not be empty")
    journal: Path = args.journal or Path(JOURNAL_NAME)
    if not journal.is_file():
        raise CliError(f"no journal {journal}: give the broadcast's --journal FILE")
    async with connect(args) as wa:  # for the account the journal is bound to; nothing sent
        counts = await receipt_counts(journal, wa.settings, campaign)
    if out.json:
        out.document(
            {
                "campaign": campaign,
                "journal": str(journal),
                "instances": [{c: getattr(row, c) for c in COLUMNS} for row in counts],
            }
        )
    elif not counts:
        out.say(f"The journal {journal} has no message of campaign {campaign}")
    else:
        show_counts(out, counts, title=f"Broadcast {campaign}")
    return EXIT_OK if counts else EXIT_FAILED
