"""The ``wachat`` command (also ``python -m wachat_async``). Needs the ``cli`` extra.

    wachat --sandbox provision examples/stores.csv --out qr-codes/
    wachat instances create jakarta_store --number 628123456789 --show-qr --wait
    wachat sandbox --port 8099

Parsing uses the standard library; progress bars and tables come from rich.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import re
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TextIO

import attrs

from ._config import API_KEY_ENV, BASE_URL_ENV
from ._version import __version__
from .bulk import ProvisionProgress, ProvisionResult
from .client import AsyncWachat
from .errors import ConflictError, InvalidRequestError, WachatError
from .models import CreateSpec, QrCode
from .qr import render_terminal, save_png

try:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table
except ImportError:  # pragma: no cover - depends on the install
    Console = None  # type: ignore[assignment, misc]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

CSV_BOOLEANS = ("reject_calls", "ignore_groups", "always_online", "read_messages", "read_status")
CSV_COLUMNS = frozenset(f.name for f in attrs.fields(CreateSpec))
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


class CliError(Exception):
    """A problem to report in one line, with exit status 2."""


# -- arguments ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wachat", description="Wachat Enterprise API from the command line."
    )
    parser.add_argument("--version", action="version", version=f"wachat-async {__version__}")
    parser.add_argument("--api-key", help=f"API key (default: ${API_KEY_ENV})")
    parser.add_argument("--base-url", help=f"API base URL (default: ${BASE_URL_ENV} or Wachat's)")
    parser.add_argument(
        "--sandbox", action="store_true", help="start the fake Wachat server in-process and use it"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    instances = commands.add_parser("instances", help="create, list, inspect, delete instances")
    ops = instances.add_subparsers(dest="operation", required=True, metavar="OPERATION")
    create = ops.add_parser("create", help="create an instance and get its QR code")
    create.add_argument("name", help="friendly instance name")
    create.add_argument("--number", help="WhatsApp number with country code")
    create.add_argument("--integration", help="WHATSAPP-BAILEYS (default) or WHATSAPP-BUSINESS")
    create.add_argument("--qr-png", type=Path, help="save the QR code here")
    create.add_argument("--show-qr", action="store_true", help="draw the QR code in the terminal")
    create.add_argument("--wait", action="store_true", help="wait until the QR code is scanned")
    create.add_argument("--wait-timeout", type=float, default=120.0)
    ops.add_parser("list", help="list instances")
    for name, summary in (("state", "connection state"), ("delete", "delete an instance")):
        sub = ops.add_parser(name, help=summary)
        sub.add_argument("name", help="API instance name (t1_..._store)")
    qr = ops.add_parser("qr", help="a fresh QR code")
    qr.add_argument("name", help="API instance name")
    qr.add_argument("--png", type=Path, help="save it here")
    qr.add_argument("--show", action="store_true", help="draw it in the terminal")

    send = commands.add_parser("send", help="send messages")
    send_ops = send.add_subparsers(dest="operation", required=True, metavar="KIND")
    text = send_ops.add_parser("text", help="send a text message")
    text.add_argument("name", help="API instance name")
    text.add_argument("number", help="recipient, digits with country code")
    text.add_argument("message")

    provision = commands.add_parser(
        "provision", help="create one instance per CSV row and save each QR as a PNG"
    )
    provision.add_argument(
        "csv",
        type=Path,
        help="columns: instance_name (required), number, "
        "integration, reject_calls, ... (the create fields)",
    )
    provision.add_argument("--out", type=Path, required=True, help="folder for the QR PNGs")
    provision.add_argument(
        "--journal", type=Path, help="resume journal (default: OUT/.wachat-journal.sqlite)"
    )
    provision.add_argument("--concurrency", type=int, default=8)
    provision.add_argument("--rate", type=float, help="at most this many creates per second")

    sandbox = commands.add_parser("sandbox", help="run the fake Wachat server until Ctrl-C")
    sandbox.add_argument("--port", type=int, default=0)
    sandbox.add_argument("--host", default="127.0.0.1")
    return parser


# -- output ---------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    if attrs.has(type(value)):
        return {
            a.name: to_jsonable(getattr(value, a.name))
            for a in attrs.fields(type(value))
            if a.name not in ("raw", "base64")
        }
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class Output:
    def __init__(self, as_json: bool, stream: TextIO) -> None:
        self.as_json = as_json
        self.stream = stream
        self.console = Console(file=stream, highlight=False, soft_wrap=True)

    def json(self, data: Any) -> None:
        self.stream.write(json.dumps(to_jsonable(data), ensure_ascii=False) + "\n")
        self.stream.flush()

    def show(self, data: Any, title: str | None = None) -> None:
        if self.as_json:
            self.json(data)
            return
        rows = to_jsonable(data)
        if isinstance(rows, dict):
            rows = [rows]
        if not rows:
            self.console.print("(none)")
            return
        table = Table(title=title, show_lines=False)
        columns = [k for k in rows[0] if not isinstance(rows[0][k], dict | list)]
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
        self.console.print(table)

    def say(self, text: str) -> None:
        if not self.as_json:
            self.console.print(text)


# -- commands -------------------------------------------------------------------------------


async def run(args: argparse.Namespace, out: Output) -> int:
    if args.command == "sandbox":
        return await run_sandbox(args, out)
    async with connect(args) as wa:
        if args.command == "instances":
            return await run_instances(args, wa, out)
        if args.command == "send":
            result = await wa.messages.send_text(args.name, args.number, args.message)
            out.show(
                result if out.as_json else {"status": result.status_code, "message": result.message}
            )
            return EXIT_OK
        return await run_provision(args, wa, out)


@contextlib.asynccontextmanager
async def connect(args: argparse.Namespace) -> AsyncIterator[AsyncWachat]:
    if not args.sandbox:
        async with AsyncWachat(args.api_key, base_url=args.base_url, timeout=args.timeout) as wa:
            yield wa
        return
    from .testing import FakeWachat

    key = args.api_key or os.environ.get(API_KEY_ENV) or "sandbox-" + secrets.token_hex(8)
    async with (
        FakeWachat(api_keys={key}) as server,
        AsyncWachat(key, base_url=server.base_url, timeout=args.timeout) as wa,
    ):
        yield wa


async def run_instances(args: argparse.Namespace, wa: AsyncWachat, out: Output) -> int:
    op = args.operation
    if op == "list":
        out.show(await wa.instances.list(), title="Instances")
    elif op == "state":
        out.show(await wa.instances.state(args.name))
    elif op == "delete":
        await wa.instances.delete(args.name)
        out.show({"deleted": args.name})
    elif op == "qr":
        qr = await wa.instances.qr(args.name)
        present_qr(qr, out, png=args.png, show=args.show)
        out.show(qr)
    else:
        created = await wa.instances.create(
            args.name, number=args.number, integration=args.integration
        )
        out.show(created.instance)
        if created.qrcode is not None:
            present_qr(created.qrcode, out, png=args.qr_png, show=args.show_qr)
        elif created.qr_error:
            out.say(f"[yellow]Created, but no QR yet:[/] {created.qr_error}")
        if args.wait:
            name = created.instance.api_instance_name
            out.say("Waiting for the QR code to be scanned (Ctrl-C to stop)...")

            def on_qr(qr: QrCode) -> None:
                if qr.code != (created.qrcode.code if created.qrcode else None):
                    present_qr(qr, out, png=args.qr_png, show=args.show_qr)

            state = await wa.instances.wait_until_connected(
                name, timeout=args.wait_timeout, on_qr=on_qr
            )
            out.show(state)
    return EXIT_OK


def present_qr(qr: QrCode, out: Output, *, png: Path | None, show: bool) -> None:
    if png is not None:
        qr.save(png)
        out.say(f"QR code saved to {png}")
    if show and qr.code and not out.as_json:
        out.stream.write(render_terminal(qr.code) + "\n")
        if qr.pairing_code:
            out.say(f"Or link with the pairing code [bold]{qr.pairing_code}[/]")


async def run_sandbox(args: argparse.Namespace, out: Output) -> int:
    from .testing import FakeWachat

    key = args.api_key or os.environ.get(API_KEY_ENV) or "sandbox-" + secrets.token_hex(12)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with FakeWachat(api_keys={key}, host=args.host, port=args.port) as server:
        if out.as_json:
            out.json({"base_url": server.base_url, "api_key": key})
        else:
            out.stream.write(
                f"Wachat sandbox running.\n"
                f"  {BASE_URL_ENV}={server.base_url}\n"
                f"  {API_KEY_ENV}={key}\n"
                "Press Ctrl-C to stop.\n"
            )
            out.stream.flush()
        await stop.wait()
    return EXIT_OK


# -- provision ------------------------------------------------------------------------------


@attrs.frozen
class RowError:
    line: int
    instance_name: str | None
    error: str


def csv_value(column: str, text: str) -> str | bool:
    """A cell as create takes it; a boolean column that is not true/false stays text, so that
    create_many reports it as that row's error."""
    value = text.strip()
    if column in CSV_BOOLEANS:
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
    return value


class CsvSpecs:
    """Reads the CSV lazily, one mapping per row for ``create_many`` (which checks each and
    reports bad rows as errors). A row's line number is kept until its result comes back."""

    def __init__(self, handle: IO[str]) -> None:
        self.reader = csv.DictReader(handle)
        header = self.reader.fieldnames or []
        if "instance_name" not in header:
            raise CliError("the CSV needs an instance_name column")
        self.unknown_columns = sorted(set(header) - CSV_COLUMNS)
        self.lines: dict[int, int] = {}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index, row in enumerate(self.reader):
            self.lines[index] = self.reader.line_num
            yield {
                column: csv_value(column, text)
                for column, text in row.items()
                if column in CSV_COLUMNS and text is not None and text.strip()
            }

    def line_of(self, index: int) -> int:
        return self.lines.pop(index, 0)


def png_name(friendly: str) -> str:
    """A file name for an instance's QR: the friendly name with unsafe characters replaced."""
    safe = re.sub(r"[^\w.-]+", "_", friendly, flags=re.UNICODE).strip("._") or "instance"
    return f"{safe}.png"


async def save_qr_for(result: ProvisionResult, wa: AsyncWachat, out_dir: Path) -> str | None:
    """Save the row's QR PNG; returns a note when there is none to save."""
    name = result.instance_name or ""
    target = out_dir / png_name(name)
    created = result.created
    if created is not None and created.qrcode is not None and created.qrcode.base64:
        save_png(created.qrcode.png_bytes(), target)
        return None
    if created is not None and created.instance.integration == "WHATSAPP-BUSINESS":
        return "WHATSAPP-BUSINESS: no QR code"
    if result.skipped and target.exists():
        return None
    api_name = result.api_instance_name
    if api_name is None:
        return "no API name known"
    try:
        save_png(await wa.instances.qr_image(api_name), target)
    except ConflictError:
        return "already connected: no QR code"
    except WachatError as exc:
        return f"QR not saved: {exc}"
    return None


async def run_provision(args: argparse.Namespace, wa: AsyncWachat, out: Output) -> int:
    if not args.csv.is_file():
        raise CliError(f"no such CSV file: {args.csv}")
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    # The sandbox forgets everything when the command ends, so there is nothing to resume there.
    journal = args.journal or (None if args.sandbox else out_dir / ".wachat-journal.sqlite")
    with args.csv.open(newline="", encoding="utf-8-sig") as handle:
        total = sum(1 for _ in csv.DictReader(handle))
    counts = {"created": 0, "reconciled": 0, "skipped": 0, "failed": 0}
    failures: list[RowError] = []
    notes: list[RowError] = []

    with args.csv.open(newline="", encoding="utf-8-sig") as handle:
        specs = CsvSpecs(handle)
        if specs.unknown_columns:
            out.say(f"[yellow]Ignoring unknown column(s):[/] {', '.join(specs.unknown_columns)}")
        progress = Progress(
            TextColumn("[bold]Provisioning"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=out.console,
            disable=out.as_json,
            transient=False,
        )
        task = progress.add_task("provision", total=total, status="")

        def on_progress(p: ProvisionProgress) -> None:
            progress.update(
                task,
                completed=p.finished,
                status=f"ok {p.succeeded} skipped {p.skipped} failed {p.failed}",
            )

        with progress:
            async for result in wa.instances.create_many(
                specs,
                concurrency=args.concurrency,
                rate_limit=args.rate,
                journal=None if journal is None else str(journal),
                on_progress=on_progress,
            ):
                line = specs.line_of(result.index)
                note = await save_qr_for(result, wa, out_dir) if result.ok else None
                if result.error is not None:
                    counts["failed"] += 1
                    failures.append(RowError(line, result.instance_name, str(result.error)))
                elif result.skipped:
                    counts["skipped"] += 1
                else:
                    assert result.created is not None
                    counts["reconciled" if result.created.reconciled else "created"] += 1
                if note:
                    notes.append(RowError(line, result.instance_name, note))
                if out.as_json:
                    out.json(
                        {
                            "line": line,
                            "instance_name": result.instance_name,
                            "api_instance_name": result.api_instance_name,
                            "status": _status(result),
                            "error": _error_text(result),
                            "png": None
                            if note or not result.ok
                            else str(out_dir / png_name(result.instance_name or "")),
                            "note": note,
                        }
                    )
    if out.as_json:
        out.json({"summary": counts, "total": total})
    else:
        summary = Table(title="Provisioning summary")
        for column in ("created", "reconciled", "skipped", "failed", "total"):
            summary.add_column(column, justify="right")
        summary.add_row(*(str(counts[c]) for c in counts), str(total))
        out.console.print(summary)
        if failures or notes:
            details = Table(title="Rows to look at")
            for column in ("line", "instance_name", "problem"):
                details.add_column(column)
            for row in sorted(failures + notes, key=lambda r: r.line)[:50]:
                details.add_row(str(row.line), row.instance_name or "", row.error)
            out.console.print(details)
        out.say(f"QR codes are in {out_dir}/" + (f" (journal: {journal})" if journal else ""))
    return EXIT_OK if counts["failed"] == 0 else EXIT_FAILED


def _status(result: ProvisionResult) -> str:
    if result.error is not None:
        return "failed"
    if result.skipped:
        return "skipped"
    return "reconciled" if result.created and result.created.reconciled else "created"


def _error_text(result: ProvisionResult) -> str | None:
    if result.error is None:
        return None
    return str(result.error)


# -- entry point ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    if Console is None:  # pragma: no cover - depends on the install
        sys.stderr.write(
            "The wachat command needs the cli extra: pip install 'wachat-async[cli]'\n"
        )
        return EXIT_USAGE
    args = build_parser().parse_args(argv)
    out = Output(args.json, sys.stdout)
    errors = Console(file=sys.stderr, highlight=False)
    try:
        return asyncio.run(run(args, out))
    except KeyboardInterrupt:
        errors.print(
            "[yellow]Interrupted.[/] Nothing was left half-done: re-run the same command to resume."
        )
        return EXIT_INTERRUPTED
    except (CliError, InvalidRequestError) as exc:
        errors.print(f"[red]error:[/] {exc}")
        return EXIT_USAGE
    except WachatError as exc:
        errors.print(f"[red]{type(exc).__name__}:[/] {exc}")
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
