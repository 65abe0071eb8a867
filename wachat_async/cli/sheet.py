"""A provisioning CSV: its columns are the create fields, its yes/no cells booleans, and each row
keeps the line it starts on.

The columns, and which of them are booleans, are the create fields (:mod:`.fields`). The whole
file is read once before anything is sent (:meth:`Sheet.open`: it exists, is UTF-8, names an
``instance_name`` column), then again lazily while provisioning (:meth:`Sheet.specs`).

Reading a CSV (:func:`read_header`, :func:`data_records`) serves a broadcast's recipients too
(:mod:`.recipients`).
"""

from __future__ import annotations

import contextlib
import csv
import typing
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from .fields import BOOLEAN_FIELDS, CREATE_FIELDS
from .outcome import CliError

_YES = frozenset({"true", "yes", "1"})
_NO = frozenset({"false", "no", "0"})


@attrs.frozen
class BadRow:
    """A row the CSV itself gets wrong (a yes/no cell that is neither, cells past the header)."""

    line: int
    instance_name: str | None
    error: str


@attrs.frozen
class Sheet:
    path: Path
    #: The column names, as the header writes them (surrounding spaces dropped).
    header: tuple[str, ...]
    #: How many rows there are (blank ones left out).
    rows: int

    @property
    def unknown_columns(self) -> list[str]:
        """Header names that are not create fields (they are ignored)."""
        return [c for c in self.header if c and c not in CREATE_FIELDS]

    @classmethod
    def open(cls, path: Path) -> Sheet:
        """Read the whole file once: a :class:`CliError` when it cannot be provisioned from."""
        header = read_header(path, required="instance_name", columns=", ".join(CREATE_FIELDS))
        with contextlib.closing(data_records(path)) as records:
            return cls(path, header, sum(1 for _ in records))

    def specs(self) -> SheetSpecs:
        return SheetSpecs(self)


class SheetSpecs:
    """The rows, read lazily, as mappings of create fields for ``create_many``.

    A row the CSV gets wrong is not handed on: it waits in :meth:`take_bad`. ``line_of(index)``
    is the line where the ``index``-th row handed on starts.
    """

    def __init__(self, sheet: Sheet) -> None:
        self._sheet = sheet
        self._lines: list[int] = []
        self._bad: list[BadRow] = []
        #: Whether reading has begun (``create_many`` pulls the first row only once its
        #: journal is open and its arguments are checked).
        self.started = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.started = True
        header = self._sheet.header
        for line, cells in data_records(self._sheet.path):
            spec = _spec(header, cells, line)
            if isinstance(spec, BadRow):
                self._bad.append(spec)
                continue
            self._lines.append(line)
            yield spec

    def line_of(self, index: int) -> int:
        return self._lines[index]

    def take_bad(self) -> list[BadRow]:
        """The bad rows met since the last call."""
        bad, self._bad = self._bad, []
        return bad


def _spec(header: tuple[str, ...], cells: list[str], line: int) -> dict[str, Any] | BadRow:
    """A row as create fields (empty cells left out), or what is wrong with it."""
    spec: dict[str, Any] = {}
    name = dict(zip(header, cells, strict=False)).get("instance_name")
    name = name.strip() if name is not None else None
    too_many = too_many_cells(header, cells)
    if too_many is not None:
        return BadRow(line, name, too_many)
    for column, raw in zip(header, cells, strict=False):
        text = raw.strip()
        if column not in CREATE_FIELDS or not text:
            continue
        if column not in BOOLEAN_FIELDS:
            spec[column] = text
        elif text.lower() in _YES | _NO:
            spec[column] = text.lower() in _YES
        else:
            return BadRow(
                line,
                name,
                f"{column}: {text!r} is not a yes/no value (write true/false, yes/no or 1/0)",
            )
    return spec


def read_header(path: Path, *, required: str, columns: str) -> tuple[str, ...]:
    """The column names of the CSV at ``path`` (surrounding spaces dropped): a
    :class:`CliError` when it is empty, names a column twice or lacks the ``required`` one
    (``columns`` says which there are)."""
    with contextlib.closing(_records(path)) as records:
        first = next(records, None)
    if first is None:
        raise CliError(
            f"{path} is empty: its first line must name the columns, {required} among them"
        )
    header = tuple(name.strip() for name in first[1])
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise CliError(f"{path}: the header names {', '.join(repeated)} more than once")
    if required not in header:
        raise CliError(
            f"{path} has no {required} column (its header: {', '.join(header)}); "
            f"the columns are {columns}"
        )
    return header


def data_records(path: Path) -> Generator[tuple[int, list[str]], None, None]:
    """``(line where it starts, cells)`` for each record after the header (see
    :func:`_records`)."""
    records = _records(path)
    next(records, None)  # the header
    yield from records


def too_many_cells(header: tuple[str, ...], cells: list[str]) -> str | None:
    """What is wrong with a row that has text in cells past the header, if it has."""
    if any(text.strip() for text in cells[len(header) :]):
        return f"the row has {len(cells)} cells, the header names {len(header)} columns"
    return None


def _records(path: Path) -> Generator[tuple[int, list[str]], None, None]:
    """``(line where it starts, cells)`` for each record, the header first; blank rows (no
    cells, or only empty ones) are left out. Undecodable text is a :class:`CliError` naming
    the line."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise CliError(f"no such CSV file: {path}") from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(_decoded(handle, path))
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise CliError(f"{path}, line {start}: not CSV ({exc})") from None
            if any(text.strip() for text in cells):
                yield start, cells


def _decoded(handle: typing.IO[bytes], path: Path) -> Iterator[str]:
    for number, raw in enumerate(handle, 1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise CliError(
                f"{path} is not UTF-8 text (line {number}, byte {exc.start + 1}: "
                f"{raw[exc.start : exc.start + 1]!r}); save it as UTF-8 CSV"
            ) from None


def line_ranges(lines: Iterable[int], most: int = 8) -> str:
    """``2-15, 18, 20-22``: line numbers as ranges, the first ``most`` of them."""
    spans: list[list[int]] = []
    for line in sorted(lines):
        if spans and line == spans[-1][1] + 1:
            spans[-1][1] = line
        else:
            spans.append([line, line])
    shown = [f"{a}-{b}" if b > a else str(a) for a, b in spans[:most]]
    return ", ".join(shown) + (", ..." if len(spans) > most else "")
