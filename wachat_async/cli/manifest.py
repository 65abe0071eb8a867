"""``OUT/manifest.csv``: what each row of a provisioning run became, safe to open in a
spreadsheet.

One line per CSV row, in line order: ``line, instance_name, api_instance_name, status
(created, reconciled, created earlier, failed), png, error, note``. ``png`` is a file name in
the same folder. A text cell that a spreadsheet would take for a formula (it starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is prefixed with ``'``. The file is
UTF-8 with a byte-order mark (so spreadsheets read it as UTF-8) and is replaced whole,
atomically.

A broadcast's results file is written the same way, a row at a time as the run goes
(:class:`SpreadsheetLog`), and put in line order when the run ends.

No file a command writes may be one it reads or keeps (:func:`refuse_overwriting`): a results
file named like the opt-out list would make the next campaign message people who opted out.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import attrs
from attrs import AttrsInstance

from .outcome import CliError

MANIFEST_NAME = "manifest.csv"
#: UTF-8 with a byte-order mark: spreadsheets then read the file as UTF-8.
ENCODING = "utf-8-sig"
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@attrs.frozen
class ManifestRow:
    line: int
    instance_name: str | None
    api_instance_name: str | None
    status: str
    #: The QR PNG's file name (in the manifest's folder), when one was saved or kept.
    png: str | None = None
    error: str | None = None
    #: Why there is no PNG for a row that did not fail (connected, no QR for the integration).
    note: str | None = None


COLUMNS: tuple[str, ...] = tuple(f.name for f in attrs.fields(ManifestRow))


def same_file(one: Path, other: Path) -> bool:
    """Whether writing ``one`` would write ``other``, whether or not either exists yet: the
    same path once symbolic links are resolved, or one file under two names (a hard link)."""
    if os.path.realpath(one) == os.path.realpath(other):
        return True
    try:
        return os.path.samefile(one, other)
    except OSError:  # one of them does not exist (yet): the paths decided
        return False


def journal_files(journal: Path | None) -> list[tuple[Path, str]]:
    """The files a journal keeps: itself and SQLite's files beside it."""
    if journal is None:
        return []
    return [(journal, "the journal")] + [
        (journal.with_name(journal.name + suffix), "a file of the journal")
        for suffix in ("-wal", "-shm", "-journal")
    ]


def refuse_overwriting(
    option: str, output: Path, inputs: Iterable[tuple[Path | None, str]]
) -> None:
    """A :class:`CliError` (nothing done yet) when ``output`` is one of ``inputs``."""
    for other, what in inputs:
        if other is not None and same_file(output, other):
            raise CliError(
                f"{option} {output} is {what} ({other}); writing it would destroy it: give "
                "another file"
            )


def spreadsheet_safe(text: str) -> str:
    """``text`` as a cell no spreadsheet evaluates."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def spreadsheet_cells(values: Iterable[object]) -> list[object]:
    """A row's values as cells no spreadsheet evaluates (None as an empty cell)."""
    return [spreadsheet_safe(v) if isinstance(v, str) else ("" if v is None else v) for v in values]


def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> None:
    """Write the manifest at ``path`` (replacing it), rows sorted by line."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding=ENCODING, newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for row in sorted(rows, key=lambda r: r.line):
                writer.writerow(spreadsheet_cells(attrs.astuple(row)))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SpreadsheetLog:
    """A CSV written a row at a time as things happen, each line on disk once written (a run
    that stops leaves what it finished), safe to open in a spreadsheet like the manifest."""

    def __init__(self, path: Path, row_type: type[AttrsInstance]) -> None:
        self.path = path
        # Line-buffered: every row reaches the file as it is written.
        self._handle = path.open("w", encoding=ENCODING, newline="", buffering=1)
        self._writer = csv.writer(self._handle)
        self._writer.writerow(f.name for f in attrs.fields(row_type))

    def write(self, row: AttrsInstance) -> None:
        """One row (of the class given): its fields in order, as the header names them."""
        self._writer.writerow(spreadsheet_cells(attrs.astuple(row)))

    def close(self) -> None:
        self._handle.close()

    def sort_by_first_column(self) -> None:
        """Replace the file, atomically, by its rows in order of their first column (a whole
        number: the input's line), as a reader expects them (they were written as they
        finished). Reads the rows back: memory for all of them, once, at the end."""
        with self.path.open(encoding=ENCODING, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            rows = sorted(reader, key=lambda cells: int(cells[0]))
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding=ENCODING, newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                writer.writerows(rows)  # already spreadsheet-safe
            os.chmod(tmp, os.stat(self.path).st_mode & 0o777)  # as it was, not mkstemp's
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
