"""``OUT/manifest.csv``: what each row of a provisioning run became, safe to open in a
spreadsheet.

One line per CSV row, in line order: ``line, instance_name, api_instance_name, status
(created, reconciled, skipped, failed), png, error, note``. ``png`` is a file name in the same
folder. A text cell that a spreadsheet would take for a formula (it starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return) is prefixed with ``'``. The file is UTF-8 with a
byte-order mark (so spreadsheets read it as UTF-8) and is replaced whole, atomically.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import attrs

MANIFEST_NAME = "manifest.csv"
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


def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> None:
    """Write the manifest at ``path`` (replacing it), rows sorted by line."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for row in sorted(rows, key=lambda r: r.line):
                writer.writerow(
                    spreadsheet_safe(v) if isinstance(v, str) else ("" if v is None else v)
                    for v in attrs.astuple(row)
                )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
