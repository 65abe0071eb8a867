"""``OUT/manifest.csv``: what each row of a provisioning run became, safe to open in a
spreadsheet.

One line per CSV row, in line order: ``line, instance_name, api_instance_name, status
(created, reconciled, skipped, failed), png, error, note``. ``png`` is a file name in the same
folder. A text cell that a spreadsheet would take for a formula (it starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return) is prefixed with ``'``. The file is UTF-8 with a
byte-order mark (so spreadsheets read it as UTF-8) and is replaced whole, atomically.

A broadcast's results file is written the same way, a row at a time as the run goes
(:class:`SpreadsheetLog`).
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import attrs
from attrs import AttrsInstance

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
        # Line-buffered: every row reaches the file as it is written.
        self._handle = path.open("w", encoding=ENCODING, newline="", buffering=1)
        self._writer = csv.writer(self._handle)
        self._writer.writerow(f.name for f in attrs.fields(row_type))

    def write(self, row: AttrsInstance) -> None:
        """One row (of the class given): its fields in order, as the header names them."""
        self._writer.writerow(spreadsheet_cells(attrs.astuple(row)))

    def close(self) -> None:
        self._handle.close()
