"""``wachat send broadcast RECIPIENTS.csv --campaign NAME --text "Hi {name}"``: one message to
each row's number through ``messages.send_many``, paced per instance, journaled, never sent
twice; a progress bar with an ETA from the pace, a results file, and a summary.

The CSV (:mod:`.recipients`) is read first without a client, as a :class:`Plan`: how many
messages each instance sends, and so how long the pace makes it take. ``--dry-run`` shows that
plan (the first messages, the rows that would not be sent) and stops. The run then reads it
again, lazily; each row gets a line in the results file (``line, instance, recipient, status,
message_id, error``) as it finishes.

With a journal (by default ``./.wachat-journal.sqlite``, the store provisioning uses; none with
``--sandbox``) a re-run of the same command skips what was sent and reports what may have been
(a message in flight when a run stopped) as unknown instead of resending it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from .. import _validate as check
from .._config import API_KEY_ENV
from ..bulk import (
    BroadcastPlan,
    BroadcastProgress,
    BroadcastResult,
    BroadcastStatus,
    InstanceWait,
    Pace,
    SendSpec,
    WaitReason,
    plan,
)
from ..bulk.journal import ReceiptCounts
from ..bulk.plan import Judged
from ..client import AsyncWachat
from ..errors import InvalidRequestError, NotFoundError, WachatError
from ..models import MediaMessage, MediaType, MessagePayload, TextMessage
from ..resources.messages import send_request
from .connect import connect
from .constants import JOURNAL_NAME, SUMMARY_ROWS
from .manifest import SpreadsheetLog, journal_files, refuse_overwriting
from .outcome import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    Interrupted,
    interrupted_as,
    refuse_journal_in_sandbox,
    row_error,
)
from .output import Bars, Output, duration, to_jsonable, value
from .parser import Parser, Subcommands
from .parser import add_command as new_command
from .pngnames import png_name
from .recipients import (
    COLUMNS,
    INSTANCE,
    Recipients,
    RowProblem,
    SpecStream,
    Template,
    read_opt_out,
)
from .report import receipt_counts, show_counts
from .sheet import line_ranges

#: Messages the dry run shows.
PREVIEW = 3
#: Without a terminal (a log file), a progress line at most this often, in seconds.
PLAIN_EVERY = 60.0
#: Waiting instances named in the status line (the others are counted).
_WAITS_SHOWN = 2
_WAIT_WORDS = {
    WaitReason.THROTTLED: "throttled by the server",
    WaitReason.CAPPED: "capped (per hour/day)",
    WaitReason.PACED: "pacing",
}

S = BroadcastStatus
#: The statuses a row may end with, in the order the counts are shown.
STATUSES = tuple(s.value for s in S)
#: Statuses of rows that never reach an instance's queue.
_NOT_QUEUED = frozenset({S.INVALID.value, S.OPTED_OUT.value})
#: Statuses of rows that need nothing more: sent (now or before), or deliberately not.
_SETTLED = (S.SENT.value, S.SKIPPED.value, S.OPTED_OUT.value)
#: Statuses of messages that went to an instance and were not sent.
_NOT_SENT = (S.UNKNOWN.value, S.FAILED.value, S.PAUSED.value)

_PACE = attrs.fields(Pace)
#: The pace options: flag, Pace field, metavar, what it sets, the check of its value.
_PACE_OPTIONS: tuple[tuple[str, attrs.Attribute[Any], str, str, Callable[..., Any]], ...] = (
    (
        "--pace",
        _PACE.interval,
        "SECONDS",
        "seconds at least between two messages",
        check.seconds_or_zero,
    ),
    (
        "--jitter",
        _PACE.jitter,
        "SECONDS",
        "up to this many seconds more, at random",
        check.seconds_or_zero,
    ),
    ("--per-hour", _PACE.hourly, "N", "at most N messages in any hour", check.positive_int),
    ("--per-day", _PACE.daily, "N", "at most N messages in any day", check.positive_int),
    (
        "--warmup",
        _PACE.warmup_messages,
        "N",
        "space the first N messages more widely (a new number)",
        check.non_negative_int,
    ),
)


def add_command(kinds: Subcommands, common: Parser) -> None:
    broadcast = new_command(
        kinds,
        common,
        "broadcast",
        "send one message to each number of a CSV, paced per instance, resumable",
        description="Send one message to each row of RECIPIENTS.csv: --text with its "
        "{placeholders} filled from the row's columns. Each instance sends at its own pace; "
        "a journal makes a re-run of the same command skip what was sent. Every row gets a "
        "line in the results file. Exit status 0 only if every row was sent (now or by an "
        "earlier run) or is opted out.",
    )
    broadcast.add_argument(
        "csv",
        type=Path,
        metavar="RECIPIENTS.csv",
        help=f"UTF-8 CSV; columns: {COLUMNS} (every column fills the {{placeholder}} of its name)",
    )
    broadcast.add_argument(
        "--campaign",
        required=True,
        metavar="NAME",
        help="one message per number and instance in a campaign; re-running it resumes",
    )
    broadcast.add_argument(
        "--instance",
        metavar="API_NAME",
        help=f"the instance to send from, for rows without an {INSTANCE} cell",
    )
    message = broadcast.add_argument_group("the message")
    message.add_argument(
        "--text",
        required=True,
        help="the text (the caption, with --media-url): {name} is the row's name cell; "
        "write {{ and }} for braces",
    )
    message.add_argument(
        "--media-url", metavar="URL", help="send this image, video, document or audio"
    )
    message.add_argument(
        "--media-type",
        choices=[t.value for t in MediaType],
        help="default: what the URL's file name says",
    )
    pace = broadcast.add_argument_group("the pace of each instance")
    for flag, field, metavar, summary, check_value in _PACE_OPTIONS:
        pace.add_argument(
            flag,
            dest=field.name,
            type=_checked(float if metavar == "SECONDS" else int, check_value),
            metavar=metavar,
            help=f"{summary} (default: {_default(field)})",
        )
    run = broadcast.add_argument_group("the run")
    for flag, summary in (
        ("--journal", f"resume journal (default: ./{JOURNAL_NAME}; none with --sandbox)"),
        ("--opt-out", "numbers never to send to, one a line (# starts a comment)"),
        ("--results", "what became of each row (default: CAMPAIGN-results.csv beside the journal)"),
    ):
        run.add_argument(flag, type=Path, metavar="FILE", help=summary)
    run.add_argument(
        "--resend-unknown",
        action="store_true",
        help="resend the messages an earlier run may have sent (in flight when it stopped)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="send nothing: show the first messages, the counts, the rows that would not be "
        "sent and how long it would take",
    )
    broadcast.set_defaults(run=run_broadcast)


def _default(field: attrs.Attribute[Any]) -> str:
    return "none" if field.default is None else f"{field.default:g}"


def _checked(
    convert: Callable[[str], Any], check_value: Callable[..., Any]
) -> Callable[[str], Any]:
    """An option's type: the text converted, then checked as the library checks it."""

    def parse(text: str) -> Any:
        try:
            number = convert(text)
        except ValueError:
            what = "a whole number" if convert is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        try:
            return check_value("the value", number)
        except InvalidRequestError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


# -- the command ----------------------------------------------------------------------------


async def run_broadcast(args: argparse.Namespace, out: Output) -> int:
    campaign = args.campaign.strip()
    if not campaign:
        raise CliError("--campaign must not be empty")
    instance = None if args.instance is None else args.instance.strip()
    if instance == "":
        raise CliError("--instance must not be empty")
    refuse_journal_in_sandbox(args)
    pace = Pace(
        **{
            f.name: getattr(args, f.name)
            for _, f, *_ in _PACE_OPTIONS
            if getattr(args, f.name) is not None
        }
    )
    template = Template.given(args.text, args.media_url, args.media_type)
    recipients = Recipients.open(args.csv, template, campaign=campaign, instance=instance)
    opt_out = frozenset() if args.opt_out is None else read_opt_out(args.opt_out)
    if args.dry_run:
        return await dry_run(args, recipients, opt_out, pace, out)
    journal = None if args.sandbox else (args.journal or Path(JOURNAL_NAME))
    if journal is not None:
        refuse_overwriting(
            "--journal",
            journal,
            [(args.csv, "the recipients CSV"), (args.opt_out, "the opt-out list")],
        )
    results = _results_path(args, campaign, journal)
    with interrupted_as(f"Interrupted while reading {args.csv}; nothing was sent."):
        plan = await Plan.read(recipients, opt_out, pace)
    async with connect(args) as wa:
        run = Broadcasting(recipients, plan, opt_out, journal, results, out)
        try:
            await run.go(wa, resend_unknown=args.resend_unknown)
        except asyncio.CancelledError:
            raise run.interrupted(sandbox=args.sandbox) from None
        finally:
            run.close()
        if journal is not None:  # the receipts recorded so far (this run's, or saved since)
            counts = await receipt_counts(journal, wa.settings, campaign)
            run.receipts = counts if any(c.receipts for c in counts) else []
    run.summarize(sandbox=args.sandbox)
    return EXIT_OK if run.all_ok else EXIT_FAILED


def _can_connect(args: argparse.Namespace) -> bool:
    """An API key is at hand (a sandbox inside the command has none of the CSV's instances)."""
    return not args.sandbox and bool(args.api_key or os.environ.get(API_KEY_ENV, "").strip())


def _results_path(args: argparse.Namespace, campaign: str, journal: Path | None) -> Path:
    """Where the results go; a :class:`CliError` (nothing sent) when they cannot."""
    name = png_name(campaign).removesuffix(".png") + "-results.csv"  # a safe file name
    path: Path = args.results or (Path() if journal is None else journal.parent) / name
    if path.is_dir():
        raise CliError(f"--results {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise CliError(f"--results {path}: no such folder {path.parent}")
    refuse_overwriting(
        "--results",
        path,
        [
            (args.csv, "the recipients CSV"),
            (args.opt_out, "the opt-out list"),
            *journal_files(journal),
        ],
    )
    return path


@attrs.frozen
class ResultRow:
    """What became of one CSV row: a line of the results file (and of ``--json``)."""

    #: The line of the CSV the row starts on.
    line: int
    #: The API name it is sent from.
    instance: str | None
    #: The number as it is sent (as the CSV wrote it, when it is not a number).
    recipient: str
    #: A :class:`~wachat_async.BroadcastStatus` value.
    status: str
    message_id: str | None = None
    error: str | None = None


def _problem_row(problem: RowProblem) -> ResultRow:
    return ResultRow(
        problem.line, problem.instance, problem.recipient, S.INVALID.value, error=problem.error
    )


def _repeated(
    recipients: Recipients, spec: SendSpec, instance: str, recipient: str, first_line: int
) -> str:
    key = recipients.key_cell(spec)
    if key is not None:
        return (
            f"key {key!r} appears again in this CSV (first on line {first_line}; one message "
            "per key)"
        )
    return (
        f"{recipient} appears again for instance {instance} in this CSV (first on line "
        f"{first_line}; one message per number and instance)"
    )


def result_row(
    recipients: Recipients,
    result: BroadcastResult,
    line: int,
    line_of: Callable[[int], int],
) -> ResultRow:
    """A result as a row of the results file: a repeat names the line it repeats."""
    spec: SendSpec = result.spec
    instance = result.instance or spec.instance
    recipient = result.recipient or spec.recipient
    error: str | None = None
    if result.duplicate_of is not None:
        first_line = line_of(result.duplicate_of)
        error = _repeated(recipients, spec, instance, recipient, first_line)
    elif result.error is not None:
        error = row_error(result.error)
        if result.status is S.UNKNOWN:
            error += " (--resend-unknown resends it)"  # the library's words say what happened
    return ResultRow(line, instance, recipient, result.status.value, result.message_id, error)


def pace_text(pace: Pace) -> str:
    """The pace in words."""
    if pace.interval or pace.jitter:
        gap = f"{pace.interval:g}"
        gap += f"-{pace.interval + pace.jitter:g} s" if pace.jitter else " s"
        text = f"each instance sends a message every {gap}"
    else:
        text = "no spacing between messages"
    if pace.per_instance > 1:
        text += f", {pace.per_instance} at a time"
    for cap, window in ((pace.hourly, "an hour"), (pace.daily, "a day")):
        if cap is not None:
            text += f", at most {cap} {window}"
    if pace.warmup_messages:
        text += f"; its first {pace.warmup_messages} more widely (warm-up)"
    return text


# -- the plan -------------------------------------------------------------------------------


@attrs.define
class Plan:
    """What a run sends: the library's plan of the CSV (:func:`wachat_async.bulk.plan`, by
    ``send_many``'s own rules), with what the command shows of it: the rows not sent, by line
    (the CSV's own problems among them), and the first messages."""

    of: BroadcastPlan
    rows: int = 0
    #: Rows that would not be sent, by status (the CSV's problems as invalid).
    not_sent: Counter[str] = attrs.Factory(Counter)
    #: The first rows that would not be sent, and the first messages, as shown.
    problems: list[ResultRow] = attrs.Factory(list)
    preview: list[dict[str, Any]] = attrs.Factory(list)
    #: Instances that would not send now (not connected, not found), with why; a dry run
    #: with an API key asks the server.
    unready: dict[str, str] = attrs.Factory(dict)

    @property
    def pace(self) -> Pace:
        return self.of.pace

    @property
    def messages(self) -> dict[str, int]:
        return self.of.messages

    @property
    def total(self) -> int:
        return self.of.total

    @property
    def projected_seconds(self) -> float:
        """The time the slowest instance that can send takes: the run's."""
        ready = [i for i in self.messages if i not in self.unready]
        return max(map(self.of.projected_seconds, ready), default=0.0)

    async def check_instances(self, wa: AsyncWachat) -> None:
        """Ask the server whether each instance can send now (a duration is only promised
        for those that can)."""
        for instance in self.messages:
            try:
                state = await wa.instances.state(instance)
            except NotFoundError:
                self.unready[instance] = "not found"
            except WachatError as exc:
                self.unready[instance] = f"its state could not be read ({row_error(exc)})"
            else:
                if not state.is_connected:
                    self.unready[instance] = f"not connected (state {state.state.value})"

    @classmethod
    async def read(
        cls,
        recipients: Recipients,
        opt_out: frozenset[str],
        pace: Pace,
        on_problem: Callable[[ResultRow], None] | None = None,
    ) -> Plan:
        """One pass over the CSV (memory for a hash per message, as ``send_many`` keeps)."""
        lines = array("I")
        shown = cls(BroadcastPlan(recipients.campaign, pace))

        def not_sent(row: ResultRow) -> None:
            shown.not_sent[row.status] += 1
            if len(shown.problems) < SUMMARY_ROWS:
                shown.problems.append(row)
            if on_problem is not None:
                on_problem(row)

        def specs() -> Iterator[SendSpec]:
            for line, row in recipients.rows():
                shown.rows += 1
                if isinstance(row, RowProblem):
                    not_sent(_problem_row(row))
                else:
                    lines.append(line)
                    yield row

        def judged(verdict: Judged | BroadcastResult) -> None:
            line = lines[verdict.index]
            if isinstance(verdict, BroadcastResult):
                not_sent(result_row(recipients, verdict, line, lines.__getitem__))
            elif len(shown.preview) < PREVIEW:
                where = {"line": line, "instance": verdict.instance, "recipient": verdict.recipient}
                shown.preview.append(where | _shown(verdict.spec.message))

        shown.of = await plan(
            specs(),
            campaign=recipients.campaign,
            prepare=send_request,
            pace=pace,
            opt_out=opt_out,
            on_spec=judged,
        )
        return shown

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "messages": self.total,
            "not_sent": {s: self.not_sent[s] for s in sorted(_NOT_QUEUED)},
            "instances": [
                {"instance": i, "messages": n, "projected_seconds": self.of.projected_seconds(i)}
                for i, n in self.messages.items()
            ],
            "projected_seconds": self.projected_seconds,
            "not_ready": self.unready,
            "pace": to_jsonable(self.pace),
        }

    def show(self, out: Output, campaign: str) -> None:
        """The plan in two lines for a person."""
        not_sent = sum(self.not_sent.values())
        out.say(
            "Campaign ",
            value(campaign),
            f": {self.rows} rows, {self.total} messages from {len(self.messages)} "
            f"instance(s)" + (f", {not_sent} rows that are not sent" if not_sent else ""),
            f"; about {duration(self.projected_seconds)} at this pace"
            if self.projected_seconds
            else "",
        )
        out.say(f"Pace: {pace_text(self.pace)}")
        for instance, why in self.unready.items():
            out.say(
                f"Warning: instance {instance} is {why}: its {self.messages[instance]} "
                "message(s) would not be sent now (the time above leaves them out); scan its QR "
                "code first",
                style="yellow",
            )


def wait_text(wait: InstanceWait, now: float) -> str:
    """``throttled: resuming in 58s``: what an instance waits for, and for how long still."""
    return f"{_WAIT_WORDS[wait.reason]}: resuming in {duration(max(0.0, wait.until - now))}"


def _shown(message: MessagePayload) -> dict[str, Any]:
    if isinstance(message, MediaMessage):
        return {"text": message.caption, "media_url": message.media_url}
    return {"text": message.message if isinstance(message, TextMessage) else None}


async def dry_run(
    args: argparse.Namespace,
    recipients: Recipients,
    opt_out: frozenset[str],
    pace: Pace,
    out: Output,
) -> int:
    """The plan, and nothing sent (no journal). With an API key the server is asked whether
    each instance can send now; without one the dry run stays offline."""

    def stream(problem: ResultRow) -> None:
        out.document(attrs.asdict(problem))

    with interrupted_as("Interrupted; this was a dry run: nothing was sent."):
        plan = await Plan.read(recipients, opt_out, pace, stream if out.json else None)
        if _can_connect(args) and plan.messages:
            async with connect(args) as wa:
                await plan.check_instances(wa)
    code = EXIT_FAILED if plan.not_sent[S.INVALID.value] else EXIT_OK
    if out.json:
        out.document({"dry_run": plan.as_json()})
        return code
    out.say("Dry run: nothing is sent.", style="bold")
    plan.show(out, recipients.campaign)
    out.table(
        [
            {
                "instance": i,
                "messages": n,
                "time": plan.unready.get(i) or duration(plan.of.projected_seconds(i)),
            }
            for i, n in plan.messages.items()
        ],
        ["instance", "messages", "time"],
        title="Messages by instance",
        whole=["instance"],
    )
    columns = ["line", "instance", "recipient", "text"]
    if recipients.template.media_url is not None:
        columns.append("media_url")
    out.table(plan.preview, columns, title="First messages", whole=["instance", "recipient"])
    _show_problems(out, plan.problems, sum(plan.not_sent.values()), "with --json")
    return code


def _show_problems(out: Output, rows: list[ResultRow], total: int, rest: str) -> None:
    if not rows:
        return
    out.table(
        [attrs.asdict(r) for r in sorted(rows, key=lambda r: r.line)],  # not completion order
        ["line", "status", "instance", "recipient", "error"],
        title="Rows not sent",
        whole=["instance", "recipient"],
    )
    if total > len(rows):
        out.say(f"… and {total - len(rows)} more ({rest})")


# -- the run --------------------------------------------------------------------------------


@attrs.define
class Broadcasting:
    """One run: the results file, the progress display, the counts, and what to say at the
    end (or at Ctrl-C)."""

    recipients: Recipients
    plan: Plan
    opt_out: frozenset[str]
    journal: Path | None
    results: Path
    out: Output
    counts: Counter[str] = attrs.field(init=False, factory=Counter)
    #: Messages of each instance that went through its queue (sent, failed, ...).
    settled: Counter[str] = attrs.field(init=False, factory=Counter)
    by_instance: dict[str, Counter[str]] = attrs.field(
        init=False,
        default=attrs.Factory(lambda self: {i: Counter() for i in self.plan.messages}, True),
    )
    #: The first rows not sent, for the summary (the results file has them all).
    problems: list[ResultRow] = attrs.field(init=False, factory=list)
    #: Per instance: sent, delivered, read, failed, when the journal has receipts.
    receipts: list[ReceiptCounts] = attrs.field(init=False, factory=list)
    sent_lines: array[int] = attrs.field(init=False, factory=lambda: array("I"))
    #: Paused instances, with why (the library's live view, once it runs).
    paused: Mapping[str, str] = attrs.field(init=False, factory=dict)
    #: What each instance waits for now, until when (the library's live view).
    waiting: Mapping[str, InstanceWait] = attrs.field(init=False, factory=dict)
    #: Without a live display: the end of each wait already announced, by instance.
    _announced: dict[str, float] = attrs.field(init=False, factory=dict)
    _log: SpreadsheetLog | None = attrs.field(init=False, default=None)
    _bars: Bars = attrs.field(init=False, factory=Bars)
    _display: contextlib.ExitStack[bool | None] = attrs.field(
        init=False, factory=contextlib.ExitStack
    )
    _last_line: float = attrs.field(init=False, factory=time.monotonic)
    _specs: SpecStream = attrs.field(
        init=False,
        default=attrs.Factory(
            lambda self: SpecStream(
                self.recipients, on_start=self._start, on_problem=self._problem
            ),
            True,
        ),
    )

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    @property
    def all_ok(self) -> bool:
        return all(self.counts[s] == 0 for s in STATUSES if s not in _SETTLED)

    async def go(self, wa: AsyncWachat, *, resend_unknown: bool) -> None:
        # A wait of a minute must not look frozen: the countdown is redrawn while it lasts.
        ticking = asyncio.create_task(self._tick()) if self.out.interactive else None
        try:
            async for result in wa.messages.send_many(
                self._specs,
                campaign=self.recipients.campaign,
                pace=self.plan.pace,
                journal=self.journal,
                opt_out=self.opt_out,
                resend_unknown=resend_unknown,
                on_progress=self._on_progress,
            ):
                self._add(self._row(result))
        finally:
            if ticking is not None:
                ticking.cancel()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._held():
                self._show()

    def _on_progress(self, progress: BroadcastProgress) -> None:
        self.paused = progress.paused
        self.waiting = progress.waiting
        if not self.out.interactive:
            self._announce_waits()

    def _held(self) -> dict[str, InstanceWait]:
        """The instances waiting on the server or on a cap (a pace's spacing is expected)."""
        return {i: w for i, w in self.waiting.items() if w.reason is not WaitReason.PACED}

    def _announce_waits(self) -> None:
        """Without a live display: a line (or a JSON object) when a wait begins."""
        for instance, wait in self._held().items():
            if self._announced.get(instance) == wait.until:
                continue
            self._announced[instance] = wait.until
            if self.out.json:
                self.out.document(
                    {"instance": instance, "waiting": wait.reason.value, "until": wait.until}
                )
            else:
                self.out.say(f"{instance}: {wait_text(wait, time.time())}")

    def _start(self) -> None:
        """The journal is open and nothing is sent yet: open the results, show the plan."""
        try:
            self._log = SpreadsheetLog(self.results, ResultRow)
        except OSError as exc:
            raise CliError(
                f"cannot write --results {self.results}: {exc.strerror or exc}"
            ) from None
        out, plan = self.out, self.plan
        if out.json:
            out.document(
                {
                    "broadcast": {
                        "campaign": self.recipients.campaign,
                        **plan.as_json(),
                        "journal": None if self.journal is None else str(self.journal),
                        "results": str(self.results),
                    }
                }
            )
        else:
            plan.show(out, self.recipients.campaign)
            out.say(f"Writing the results to {self.results}")
        self._bars = self._display.enter_context(out.progress("Sending", plan.rows, plan.messages))

    def _problem(self, problem: RowProblem) -> None:
        self._add(_problem_row(problem))

    def _row(self, result: BroadcastResult) -> ResultRow:
        line_of = self._specs.line_of
        return result_row(self.recipients, result, line_of(result.index), line_of)

    def _add(self, row: ResultRow) -> None:
        self.counts[row.status] += 1
        if row.status == S.SENT.value:
            self.sent_lines.append(row.line)
        elif row.status not in _SETTLED and len(self.problems) < SUMMARY_ROWS:
            self.problems.append(row)
        if row.status not in _NOT_QUEUED and row.instance in self.by_instance:
            self.settled[row.instance] += 1
            self.by_instance[row.instance][row.status] += 1
        if self._log is not None:
            self._log.write(row)
        eta = self.eta()
        if self.out.json:
            self.out.document(attrs.asdict(row) | {"eta_seconds": round(eta, 1)})
        status = self._show(eta, row.instance)
        if not self.out.interactive and time.monotonic() - self._last_line >= PLAIN_EVERY:
            self._last_line = time.monotonic()
            self.out.say(f"{self.finished} of {self.plan.rows} rows done: {status}")

    def _show(self, eta: float | None = None, changed: str | None = None) -> str:
        """Redraw the status line and the line of each instance that changed (or waits);
        returns the status."""
        now = time.time()
        held = self._held()
        status = self._status_text(self.eta(now) if eta is None else eta, held, now)
        self._bars(self.finished, status)
        shown = {*held, *([changed] if changed is not None else [])}
        for instance in shown & self.by_instance.keys():
            done = self.by_instance[instance]
            note = ", ".join(f"{done[s]} {s}" for s in STATUSES if done[s])
            if instance in self.paused:
                note += " (paused)"
            elif instance in held:
                waiting = wait_text(held[instance], now)
                note = f"{note} ({waiting})" if note else waiting
            self._bars.part(instance, self.settled[instance], note)
        return status

    def eta(self, now: float | None = None) -> float:
        """Seconds left at this pace: the remaining messages of the slowest instance, after
        what it waits for now on the server or a cap (paused ones left out: their messages are
        not sent)."""
        pace, left = self.plan.pace, 0.0
        now = time.time() if now is None else now
        held = self._held()
        for instance, planned in self.plan.messages.items():
            done = self.settled[instance]
            if instance not in self.paused and planned > done:
                wait = held.get(instance)
                waiting = 0.0 if wait is None else max(0.0, wait.until - now)
                # After a message, each one left waits a turn; before any, the first does not.
                to_send = pace.projected_seconds(planned - done + (1 if done else 0))
                left = max(left, waiting + to_send)
        return left

    def _status_text(
        self, eta: float, held: Mapping[str, InstanceWait] | None = None, now: float = 0.0
    ) -> str:
        parts = [", ".join(f"{self.counts[s]} {s}" for s in STATUSES if self.counts[s])]
        if eta:
            parts.append(f"about {duration(eta)} left")
        if held:
            parts += [f"{i} {wait_text(w, now)}" for i, w in list(held.items())[:_WAITS_SHOWN]]
            if len(held) > _WAITS_SHOWN:
                parts.append(f"{len(held) - _WAITS_SHOWN} more waiting")
        return "; ".join(part for part in parts if part)

    def close(self) -> None:
        self._display.close()
        if self._log is not None:
            self._log.close()
            # Every row is in the file already; in line order is for the reader (a failure
            # here leaves them in the order they finished).
            with contextlib.suppress(OSError, ValueError):
                self._log.sort_by_first_column()

    # -- the end ------------------------------------------------------------------------------

    def interrupted(self, *, sandbox: bool) -> Interrupted:
        if self._log is None:
            return Interrupted("Interrupted before anything was sent.")
        done = (
            f"Interrupted after {self.finished} of {self.plan.rows} rows "
            f"({self.counts[S.SENT.value]} sent now; results so far in {self.results})."
        )
        if self.journal is not None:
            return Interrupted(
                done,
                [
                    "re-run the same command to resume; messages that were in flight are "
                    "reported as unknown, not resent (use --resend-unknown to resend them)"
                ],
            )
        sent = (
            f"Sent: lines {line_ranges(self.sent_lines)}" if self.sent_lines else "Nothing was sent"
        )
        gone = " The sandbox ran inside this command and is gone." if sandbox else ""
        return Interrupted(
            f"{done} {sent}; messages in flight when it stopped may or may not have gone out. "
            f"There is no journal: running the command again would send every row again.{gone}"
        )

    def summarize(self, *, sandbox: bool) -> None:
        counts, out = self.counts, self.out
        instances: list[dict[str, Any]] = [
            {
                "instance": instance,
                "messages": planned,
                **{s: done[s] for s in STATUSES if s not in _NOT_QUEUED},
                "paused_because": self.paused.get(instance),
            }
            for instance, planned in self.plan.messages.items()
            for done in [self.by_instance[instance]]
        ]
        if out.json:
            out.document(
                {
                    "summary": {s: counts[s] for s in STATUSES},
                    "total": self.finished,
                    "instances": instances,
                    "results": str(self.results),
                    "journal": None if self.journal is None else str(self.journal),
                    "receipts": [attrs.asdict(c) for c in self.receipts],
                }
            )
            return
        out.say(
            f"Broadcast {self.recipients.campaign}: {self.finished} rows: "
            + ", ".join(f"{counts[s]} {s}" for s in STATUSES)
        )
        out.table(
            [
                {
                    "instance": row["instance"],
                    "messages": row["messages"],
                    "sent": row[S.SENT.value],
                    "skipped": row[S.SKIPPED.value],
                    "not sent": sum(row[s] for s in _NOT_SENT),
                    "paused because": row["paused_because"],
                }
                for row in instances
            ],
            ["instance", "messages", "sent", "skipped", "not sent", "paused because"],
            title="Instances",
            whole=["instance"],
        )
        if self.receipts:
            show_counts(out, self.receipts, title="Receipts")
        not_sent = self.finished - sum(counts[s] for s in _SETTLED)
        _show_problems(out, self.problems, not_sent, f"in {self.results}")
        out.say(f"Results: {self.results}")
        if self.journal is not None:
            again = sum(counts[s] for s in (S.FAILED.value, S.PAUSED.value))
            hint = " (re-run the same command to send the failed and paused rows)" if again else ""
            out.say(f"Journal: {self.journal}{hint}")
        if counts[S.UNKNOWN.value]:
            out.say(
                f"{counts[S.UNKNOWN.value]} message(s) may or may not have been sent; they are "
                "not resent unless you add --resend-unknown",
                style="yellow",
            )
        if sandbox and self.paused:
            out.say(
                "--sandbox runs an empty Wachat inside this command: the instances of the CSV "
                "do not exist there. To try a broadcast, run `wachat sandbox` and create and "
                "scan instances in it.",
                style="yellow",
            )
