"""``wachat provision CSV --out DIR``: one instance per CSV row, through ``create_many``; a QR PNG
per instance, ``DIR/manifest.csv`` listing what every row became, and a summary.

With a journal (by default ``DIR/.wachat-journal.sqlite``; none with ``--sandbox``, which
forgets everything at exit) a re-run resumes: rows an earlier run created are ``created
earlier`` (their PNG saved again if it is missing) and failed ones are tried again.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import attrs

from ..bulk import DuplicateGroup, ProvisionProgress, ProvisionResult
from ..client import AsyncWachat
from ..errors import ConflictError, InvalidRequestError, WachatError
from ..models import CreateSpec, Integration, QrCode
from ..qr import save_png
from ..resources.instances import AsyncInstances
from .connect import connect
from .constants import JOURNAL_NAME, SUMMARY_ROWS
from .dedupe import duplicate_json, duplicate_line
from .fields import BOOLEAN_FIELDS, CREATE_FIELDS
from .manifest import (
    MANIFEST_NAME,
    ManifestRow,
    journal_files,
    refuse_overwriting,
    same_file,
    write_manifest,
)
from .outcome import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    Interrupted,
    refuse_journal_in_sandbox,
    row_error,
)
from .output import Output
from .parser import Parser, Subcommands, add_command
from .pngnames import png_name
from .sheet import BadRow, Sheet, SheetSpecs, line_ranges

#: What a row became. ``created earlier``: the journal says an earlier run created it (the
#: library's ``skipped``: nothing was sent now).
CREATED_EARLIER = "created earlier"
STATUSES = ("created", "reconciled", CREATED_EARLIER, "failed")

_CONCURRENCY = inspect.signature(AsyncInstances.create_many).parameters["concurrency"].default


def add_commands(commands: Subcommands, common: Parser) -> None:
    others = [c for c in CREATE_FIELDS if c != "instance_name"]
    provision = add_command(
        commands,
        common,
        "provision",
        "create one instance per CSV row; a QR PNG each, and a manifest",
        description="Create one instance per CSV row, save each QR code as a PNG in DIR and "
        "list what every row became in DIR/manifest.csv. Exit status 0 only if every row "
        "succeeded.",
    )
    provision.add_argument(
        "csv",
        type=Path,
        help=f"UTF-8 CSV; columns: instance_name (required), {', '.join(others)}; "
        f"{', '.join(sorted(BOOLEAN_FIELDS))} take true/false, yes/no or 1/0",
    )
    provision.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the PNGs and manifest"
    )
    provision.add_argument(
        "--journal",
        type=Path,
        metavar="FILE",
        help=f"resume journal (default: DIR/{JOURNAL_NAME}; none with --sandbox)",
    )
    provision.add_argument(
        "--concurrency",
        type=int,
        default=_CONCURRENCY,
        help=f"creates in flight at most (default: {_CONCURRENCY})",
    )
    provision.add_argument(
        "--rate", type=float, metavar="PER_SECOND", help="at most this many creates per second"
    )
    provision.set_defaults(run=run_provision)


async def run_provision(args: argparse.Namespace, out: Output) -> int:
    refuse_journal_in_sandbox(args)
    sheet = Sheet.open(args.csv)
    folder = _out_folder(args.out)
    journal = args.journal or (None if args.sandbox else folder / JOURNAL_NAME)
    refuse_overwriting("--out", folder / MANIFEST_NAME, _kept(sheet.path, journal))
    if journal is not None:
        refuse_overwriting("--journal", journal, [(sheet.path, "the CSV")])
    if sheet.unknown_columns:
        out.say(
            f"Ignoring column(s) that are not create fields: {', '.join(sheet.unknown_columns)}",
            style="yellow",
        )
    async with connect(args) as wa:
        run = Provisioning(wa, sheet, folder, journal, out)
        try:
            await run.go(args.concurrency, args.rate)
        except asyncio.CancelledError:
            raise run.interrupted(sandbox=args.sandbox) from None
        finally:
            run.write_manifest()
    run.summarize()
    return EXIT_OK if run.all_ok else EXIT_FAILED


def _out_folder(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise CliError(f"--out {path} is a file; give a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create --out folder {path}: {exc.strerror or exc}") from None
    return path


def _kept(csv: Path, journal: Path | None) -> list[tuple[Path | None, str]]:
    """The files a run reads or keeps, which none it writes may be."""
    return [(csv, "the CSV"), *journal_files(journal)]


def _no_progress(done: int, status: str) -> None:
    return None


@attrs.define
class Provisioning:
    """One run: the rows it settled, their PNGs, the manifest and the summary."""

    wa: AsyncWachat
    sheet: Sheet
    folder: Path
    journal: Path | None
    out: Output
    specs: SheetSpecs = attrs.field(
        init=False, default=attrs.Factory(lambda self: self.sheet.specs(), takes_self=True)
    )
    rows: list[ManifestRow] = attrs.field(init=False, factory=list)
    counts: Counter[str] = attrs.field(init=False, factory=Counter)
    #: Lines of rows that succeeded but whose PNG could not be saved.
    png_missing: set[int] = attrs.field(init=False, factory=set)
    _progress: Callable[[int, str], None] = attrs.field(init=False, default=_no_progress)
    #: What the run's closing sweep found: names it created that another instance holds.
    duplicates: tuple[DuplicateGroup, ...] = attrs.field(init=False, default=())
    #: Failed rows a re-run may create (not those whose input is wrong).
    retryable: int = attrs.field(init=False, default=0)

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST_NAME

    @property
    def all_ok(self) -> bool:
        return not self.png_missing and all(r.status != "failed" for r in self.rows)

    async def go(self, concurrency: int, rate: float | None) -> None:
        with self.out.progress("Provisioning", self.sheet.rows) as self._progress:
            async for result in self.wa.instances.create_many(
                self.specs,
                concurrency=concurrency,
                rate_limit=rate,
                journal=None if self.journal is None else str(self.journal),
                on_progress=self._on_progress,
            ):
                self._add_bad_rows()
                self._add(await self._settle(result))
            self._add_bad_rows()

    def _on_progress(self, progress: ProvisionProgress) -> None:
        self.duplicates = progress.duplicates or self.duplicates

    def _add(self, row: ManifestRow) -> None:
        self.rows.append(row)
        self.counts[row.status] += 1
        if self.out.json:
            self.out.document(row)
        self._progress(
            len(self.rows), ", ".join(f"{self.counts[s]} {s}" for s in STATUSES if self.counts[s])
        )

    def _add_bad_rows(self) -> None:
        for bad in self.specs.take_bad():
            self._add(_bad_row(bad))

    async def _settle(self, result: ProvisionResult) -> ManifestRow:
        line = self.specs.line_of(result.index)
        name = result.instance_name
        if result.error is not None or name is None:
            if not _failed_on_input(result):
                self.retryable += 1
            return ManifestRow(
                line, name, result.api_instance_name, "failed", error=self._error(result)
            )
        png, note = await self._save_png(result, name, line)
        status = CREATED_EARLIER if result.skipped else result.status
        return ManifestRow(line, name, result.api_instance_name, status, png=png, note=note)

    async def _save_png(
        self, result: ProvisionResult, name: str, line: int
    ) -> tuple[str | None, str | None]:
        """Save the row's QR PNG: its file name, or a note saying why there is none (the line
        goes in :attr:`png_missing` when one was due and could not be saved)."""
        file_name = png_name(name)
        target = self.folder / file_name
        if _integration(result) == Integration.WHATSAPP_BUSINESS:
            return None, "WHATSAPP-BUSINESS: no QR code"
        if result.skipped and target.exists():
            return file_name, None
        kept = next(
            (
                what
                for path, what in _kept(self.sheet.path, self.journal)
                if path and same_file(target, path)
            ),
            None,
        )
        if kept is not None:
            self.png_missing.add(line)
            return None, f"QR code not saved: {file_name} is {kept}"
        try:
            png = _png_bytes(result.qrcode)
            if png is None:
                png = await self.wa.instances.qr_image(result.api_instance_name or "")
            save_png(png, target)
        except ConflictError:
            return None, "already connected: no QR code"
        except (WachatError, OSError, ValueError) as exc:
            self.png_missing.add(line)
            return None, f"QR code not saved: {exc}"
        return file_name, None

    def _error(self, result: ProvisionResult) -> str:
        """An error in the CSV's words: a repeated name says the line it first appeared on."""
        error = result.error
        if error is None:
            return "no instance name"
        if result.duplicate_of is not None:
            return (
                f"instance_name {result.instance_name!r} appears twice in the CSV (first on "
                f"line {self.specs.line_of(result.duplicate_of)}); friendly names must be unique"
            )
        return row_error(error)

    # -- the end ------------------------------------------------------------------------------

    def write_manifest(self) -> None:
        """Write the manifest of what happened, once anything was attempted."""
        if self.specs.started:
            self._add_bad_rows()
            write_manifest(self.manifest, self.rows)

    def interrupted(self, *, sandbox: bool) -> Interrupted:
        done = f"Interrupted after {len(self.rows)} of {self.sheet.rows} rows"
        if self.rows:
            done += f" (lines {line_ranges(r.line for r in self.rows)}; in {self.manifest})"
        if sandbox:
            return Interrupted(
                f"{done}. The sandbox ran inside this command and is gone, with its instances."
            )
        if self.journal is None:
            return Interrupted(
                f"{done}. There is no journal: creates that were on their way may or may not "
                "exist, and running the command again would create every row again."
            )
        return Interrupted(
            f"{done}.",
            [
                "re-run the same command to resume: the journal "
                f"{self.journal} remembers what was created, so nothing is created twice",
            ],
        )

    def summarize(self) -> None:
        counts = self.counts
        if self.out.json:
            self.out.document(
                {
                    "summary": {s: counts[s] for s in STATUSES},
                    "total": len(self.rows),
                    "png_missing": len(self.png_missing),
                    "manifest": str(self.manifest),
                    "out": str(self.folder),
                    "journal": None if self.journal is None else str(self.journal),
                    "ignored_columns": self.sheet.unknown_columns,
                    "duplicates": [duplicate_json(g) for g in self.duplicates],
                }
            )
            return
        self.out.say(
            f"Provisioned {len(self.rows)} rows: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES)
        )
        first = sorted(
            self.rows,
            key=lambda r: (r.status != "failed" and r.line not in self.png_missing, r.line),
        )
        self.out.table(
            [
                {
                    "line": r.line,
                    "status": r.status,
                    "instance_name": r.instance_name,
                    "api_instance_name": r.api_instance_name,
                    "png": r.png,
                    "problem": r.error or r.note,
                }
                for r in first[:SUMMARY_ROWS]
            ],
            ["line", "status", "instance_name", "api_instance_name", "png", "problem"],
            title="Rows (failures first)",
            whole=["api_instance_name", "png"],
        )
        if len(self.rows) > SUMMARY_ROWS:
            self.out.say(f"… and {len(self.rows) - SUMMARY_ROWS} more in {self.manifest}")
        if self.png_missing:
            self.out.say(f"{len(self.png_missing)} QR code(s) could not be saved", style="red")
        for group in self.duplicates:
            self.out.say(
                "Duplicate (a create landed twice): " + duplicate_line(group),
                style="yellow" if group.left else None,
            )
        self.out.say(f"Manifest: {self.manifest}")
        self.out.say(f"QR codes: {self.folder}/")
        if self.journal is not None:
            # Rows that failed on their input fail again until the CSV is fixed.
            again = (
                f" (re-run the same command to retry the {self.retryable} row(s) the server failed)"
                if self.retryable
                else ""
            )
            self.out.say(f"Journal: {self.journal}{again}")


def _failed_on_input(result: ProvisionResult) -> bool:
    """The row's own spec is wrong (or repeats a name): a re-run fails it the same way."""
    return isinstance(result.error, InvalidRequestError) or result.duplicate_of is not None


def _bad_row(bad: BadRow) -> ManifestRow:
    return ManifestRow(bad.line, bad.instance_name, None, "failed", error=bad.error)


def _integration(result: ProvisionResult) -> str | None:
    if result.created is not None and result.created.instance.integration is not None:
        return result.created.instance.integration
    spec = result.spec
    return str(spec.integration) if isinstance(spec, CreateSpec) and spec.integration else None


def _png_bytes(qrcode: QrCode | None) -> bytes | None:
    if qrcode is None or not qrcode.base64:
        return None
    try:
        return qrcode.png_bytes()
    except ValueError:
        return None
