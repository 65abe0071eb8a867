"""Everything the command prints, in its three forms.

- **rich**: stdout is a terminal. Prose is word-wrapped at the terminal's width. Tables are
  compact (no box, times to the second) and never cut their identifier columns (API instance
  names): a table too wide leaves out its optional columns, cuts the others with an ellipsis
  or wraps them, and only as a last resort shows its records one ``key: value`` per line. QR
  codes drawn, a progress bar (with a bar per part below it: a broadcast's instances).
- **plain**: stdout is a pipe or a file. No box drawing, no colour, no truncation, no
  wrapping, one record per line: a table is a tab-separated header line and a line per row; a
  single record is one line of tab-separated ``key=value`` fields.
- **json** (``--json``): one JSON document, or one JSON object per line for a stream; errors
  as ``{"error": {...}}`` on stderr.

Text from users and servers (friendly names, CSV headers and cells, server messages) is shown
literally in every form: control characters become visible escapes (``\\x1b``), and rich
never interprets markup or emoji codes (the consoles have both switched off), so a name like
``[bold]x[/]`` prints as itself. JSON escapes the same characters as ``\\u001b``.
"""

from __future__ import annotations

import contextlib
import enum
import json
import re
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

import attrs
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from ..qr import render_terminal
from .outcome import EXIT_INTERRUPTED, Failure

# C0 and C1 controls, DEL, line and paragraph separators, the bidirectional overrides and
# marks (they reorder what a terminal shows), a byte-order mark, and lone surrogates (from
# undecodable command-line bytes; they cannot even be written to a UTF-8 stream).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff"
    "\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

#: Columns a wrapping table may fold to this width at the least before it gives up on a table.
_FOLDED_WIDTH = 24
#: ... and a one-line table may cut them to this width (an ellipsis included).
_CUT_WIDTH = 8
#: Between two columns of a table on a terminal.
_GAP = 2


def literal(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\n``)."""
    return _UNSAFE.sub(_visible, text)


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def cell(value: object) -> str:
    """A value as one line of text (None as empty), shown literally."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, datetime):
        value = value.isoformat()
    return literal(str(value))


def short_time(when: datetime) -> str:
    """A time for a person reading a table: to the second, as the server gave it
    (``2026-12-04 02:50:23``)."""
    return literal(when.replace(microsecond=0, tzinfo=None).isoformat(sep=" "))


def candidates(instances: Iterable[tuple[str, object, object]]) -> list[str]:
    """Instances a name could mean, a line each (API name, state, when created: a datetime or
    ISO text), oldest first: for an error that asks which one."""
    lines = []
    for api_name, state, created in instances:
        when = created
        if isinstance(created, str):
            with contextlib.suppress(ValueError):
                when = datetime.fromisoformat(created)
        shown = _table_cell(when) or "?"
        lines.append((shown, f"{cell(api_name)}  {cell(state) or '?'}  created {shown}"))
    return [line for _, line in sorted(lines)]


def value(data: object, style: str = "bold") -> Text:
    """A piece of data inside a sentence of :meth:`Output.say`, styled on a terminal."""
    return Text(cell(data), style=style)


def to_jsonable(data: Any) -> Any:
    """Models, enums and datetimes as plain JSON values (``raw`` bodies left out)."""
    if attrs.has(type(data)):
        return {
            a.name: to_jsonable(getattr(data, a.name))
            for a in attrs.fields(type(data))
            if a.name != "raw"
        }
    if isinstance(data, Mapping):
        return {str(k): to_jsonable(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [to_jsonable(v) for v in data]
    if isinstance(data, enum.Enum):
        return to_jsonable(data.value)
    if isinstance(data, datetime):
        return data.isoformat()
    if isinstance(data, bool | int | float) or data is None:
        return data
    return str(data)


def dumps(data: Any) -> str:
    """One line of JSON: non-ASCII text kept, but no raw control character (json.dumps leaves
    DEL, C1 controls, bidi overrides and U+2028 raw; they are escaped as ``\\uXXXX`` here)."""
    text = json.dumps(to_jsonable(data), ensure_ascii=False)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _key(key: str, pad: int) -> tuple[str, str]:
    """``key: `` padded to line values up, dimmed on a terminal."""
    return f"{key}:".ljust(pad + 1) + " ", "dim"


def _table_cell(data: object) -> str:
    """A cell of a table on a terminal: as :func:`cell`, times to the second."""
    return short_time(data) if isinstance(data, datetime) else cell(data)


def _widths(columns: Sequence[str], cells: Sequence[Sequence[str]]) -> dict[str, int]:
    """Each column's widest text, its header's included."""
    return {
        column: max([cell_len(column), *(cell_len(row[index]) for row in cells)])
        for index, column in enumerate(columns)
    }


def _trimmed(line: list[Segment]) -> Text:
    """A rendered line as text, without the blanks it ends with (a table pads its cells)."""
    text = Text.assemble(*((s.text, s.style or "") for s in line if not s.control))
    text.rstrip()
    return text


def _console(stream: TextIO) -> Console:
    return Console(
        file=stream, markup=False, emoji=False, highlight=False, soft_wrap=True, safe_box=True
    )


def duration(seconds: float) -> str:
    """A span of time for a person: ``45s``, ``3m 20s``, ``2h 05m``, ``3d 04h`` (``<1s``)."""
    if 0 < seconds < 0.5:
        return "<1s"
    days, rest = divmod(round(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


class _Board(Progress):
    """Rich's progress bar, and under it lines of text: a status, then a line per part. Text
    there wraps at the terminal's width instead of being cut, so a part's name stays whole."""

    def __init__(self, *columns: ProgressColumn, parts: Mapping[str, int], **options: Any) -> None:
        self.status = ""
        #: Each part's name as shown, done, total and note (read by rich's refresh thread).
        self.parts = {name: (literal(name), 0, total, "") for name, total in parts.items()}
        super().__init__(*columns, **options)  # which renders once already

    def get_renderables(self) -> Iterator[RenderableType]:
        yield from super().get_renderables()
        if self.status:
            yield Text(self.status, no_wrap=False, overflow="fold")
        for shown, done, total, note in list(self.parts.values()):
            line = Text.assemble((shown, "bold"), f"  {done}/{total}", f"  {note}" if note else "")
            line.no_wrap, line.overflow = False, "fold"  # the consoles soft-wrap: wrap here
            yield line


class Bars:
    """A progress display's handle (:meth:`Output.progress`): ``bars(done, status)`` moves the
    bar and sets the status under it, ``bars.part(name, done, note)`` one part's line. Without
    a display (not a terminal) both do nothing."""

    def __init__(self, board: _Board | None = None, task: TaskID | None = None) -> None:
        self._board = board
        self._task = task

    def __call__(self, done: int, status: str) -> None:
        if self._board is not None and self._task is not None:
            self._board.status = literal(status)
            self._board.update(self._task, completed=done)

    def part(self, name: str, done: int, note: str = "") -> None:
        board = self._board
        if board is not None and name in board.parts:
            shown, _, total, _ = board.parts[name]
            board.parts[name] = (shown, done, total, literal(note))


class Output:
    """Where and how one run of the command prints. See the module docstring."""

    def __init__(
        self, *, json_mode: bool, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.json = json_mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.console = _console(self.stdout)
        self.errors = _console(self.stderr)
        #: Rich layout: stdout is a terminal (as rich sees it: ``TTY_COMPATIBLE`` and
        #: ``FORCE_COLOR`` count) and JSON was not asked for.
        self.interactive = not json_mode and self.console.is_terminal

    # -- JSON ---------------------------------------------------------------------------------

    def document(self, data: Any) -> None:
        """One JSON document (or one line of a JSON stream) on stdout."""
        self.stdout.write(dumps(data) + "\n")
        self.stdout.flush()

    # -- people -------------------------------------------------------------------------------

    def say(self, *parts: str | Text, style: str | None = None) -> None:
        """One line for a person (nothing in JSON mode). ``str`` parts are shown literally;
        :func:`value` styles a piece of data."""
        if self.json:
            return
        line = Text.assemble(*(Text(literal(p)) if isinstance(p, str) else p for p in parts))
        if style:
            line.stylize(style)
        self._line(line)

    def note(self, *parts: str | Text, style: str | None = None) -> None:
        """A line for a person at a terminal only: piped, the output stays its records."""
        if self.interactive:
            self.say(*parts, style=style)

    def _line(self, line: Text) -> None:
        if self.interactive:
            self.console.print(line, soft_wrap=False)  # wrapped between words
        else:
            self.stdout.write(line.plain + "\n")
            self.stdout.flush()

    def record(self, fields: Mapping[str, object]) -> None:
        """One record (empty values left out): ``key: value`` lines on a terminal, one line of
        tab-separated ``key=value`` fields elsewhere."""
        if self.json:
            return
        shown = {k: cell(v) for k, v in fields.items() if v is not None and v != ""}
        if not self.interactive:
            self.stdout.write("\t".join(f"{k}={text}" for k, text in shown.items()) + "\n")
            self.stdout.flush()
            return
        pad = max((len(k) for k in shown), default=0)
        for key, text in shown.items():
            self._line(Text.assemble(_key(key, pad), text))

    def table(
        self,
        rows: Sequence[Mapping[str, object]],
        columns: Sequence[str],
        *,
        title: str | None = None,
        whole: Collection[str] = (),
        optional: Sequence[str] = (),
        one_line: bool = False,
    ) -> None:
        """Records as a table. Columns in ``whole`` are never cut nor wrapped (identifiers:
        API instance names, file names). On a terminal too narrow, the ``optional`` columns
        are left out (the first given first), then the others wrap, or with ``one_line`` are
        cut with an ellipsis so that each row stays one line. When even that does not fit,
        each record is shown as ``key: value`` lines (with ``one_line``, only the columns
        left)."""
        if self.json:
            return
        if not self.interactive:
            lines = [list(columns), *([cell(row.get(c)) for c in columns] for row in rows)]
            for line in lines:
                self.stdout.write("\t".join(line) + "\n")
            self.stdout.flush()
            return
        cells = [[_table_cell(row.get(c)) for c in columns] for row in rows]
        widths = _widths(columns, cells)
        shown = list(columns)
        dropping = [c for c in optional if c in shown]
        fit = self._fit(shown, widths, whole, None)
        while fit is None and dropping:  # leave out columns before cutting any
            shown.remove(dropping.pop(0))
            fit = self._fit(shown, widths, whole, None)
        if fit is None:
            fit = self._fit(shown, widths, whole, _CUT_WIDTH if one_line else _FOLDED_WIDTH)
        if fit is None and one_line:  # the columns left, a record each (the rest is piped)
            kept = [columns.index(c) for c in shown]
            self._vertical(shown, [[line[i] for i in kept] for line in cells], title)
            return
        if fit is None:
            self._vertical(columns, cells, title)
            return
        table = Table(
            title=title, title_justify="left", box=None, pad_edge=False, header_style="bold"
        )
        for column in shown:
            keep = column in whole
            table.add_column(
                column,
                width=fit[column],
                no_wrap=keep or one_line,
                overflow="ignore" if keep else "ellipsis" if one_line else "fold",
            )
        for line in cells:
            table.add_row(*(Text(line[columns.index(c)]) for c in shown))
        for row in self.console.render_lines(table, pad=False):
            self.console.print(_trimmed(row))

    def _fit(
        self,
        shown: Sequence[str],
        widths: Mapping[str, int],
        whole: Collection[str],
        floor: int | None,
    ) -> dict[str, int] | None:
        """Each shown column's width within the terminal's: ``whole`` columns as wide as their
        widest cell, the others narrowed (the widest first) to ``floor`` at the least (None:
        not narrowed); None when that is not enough."""
        fit = {c: widths[c] for c in shown}
        over = sum(fit.values()) + _GAP * (len(shown) - 1) - self.console.width
        while over > 0:
            narrowable = [
                c for c in shown if c not in whole and floor is not None and fit[c] > floor
            ]
            if not narrowable:
                return None
            widest = max(narrowable, key=lambda c: fit[c])
            fit[widest] -= 1
            over -= 1
        return fit

    def _vertical(self, columns: Sequence[str], cells: list[list[str]], title: str | None) -> None:
        """The last resort of a table too wide: ``key: value`` lines, a blank line between
        records."""
        if title:
            self.console.print(Text(literal(title), style="bold"))
        pad = max(len(c) for c in columns)
        for number, line in enumerate(cells):
            if number:
                self.console.print()
            for column, text in zip(columns, line, strict=True):
                if text:
                    self._line(Text.assemble(_key(column, pad), text))

    def qr(self, code: str, *, force: bool = False) -> None:
        """Draw a QR code: on a terminal, or anywhere when ``force``d (on stderr in JSON mode,
        so that stdout stays one JSON document)."""
        if not (self.interactive or force):
            return
        stream = self.stderr if self.json else self.stdout
        stream.write(render_terminal(code) + "\n")
        stream.flush()

    @contextlib.contextmanager
    def progress(
        self, label: str, total: int, parts: Mapping[str, int] | None = None
    ) -> Iterator[Bars]:
        """A progress bar on a terminal, a status under it, and a line for each of ``parts``
        (name: total); the :class:`Bars` do nothing elsewhere."""
        if not self.interactive:
            yield Bars()
            return
        board = _Board(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            parts=parts or {},
            console=self.console,
            transient=True,
        )
        task = board.add_task(label, total=total)
        with board:
            yield Bars(board, task)

    # -- failures -----------------------------------------------------------------------------

    def fail(self, failure: Failure) -> None:
        """A failure on stderr: one JSON document, or ``error: ...`` and the ways to go on."""
        if self.json:
            self.stderr.write(dumps(failure.as_json()) + "\n")
            self.stderr.flush()
            return
        first = (
            ("", "bold yellow")
            if failure.exit_code == EXIT_INTERRUPTED
            else ("error: ", "bold red")
        )
        lines = [Text.assemble(first, literal(failure.text))]
        lines += [Text(literal(hint)) for hint in failure.hints]
        for number, line in enumerate(lines):
            if self.errors.is_terminal:  # wrapped between words, the hints indented
                indent = 2 if number else 0
                for part in line.wrap(self.errors, max(self.errors.width - indent, 20)):
                    part.rstrip()
                    self.errors.print(Text(" " * indent) + part, soft_wrap=True)
            else:
                self.stderr.write(("  " if number else "") + line.plain + "\n")
        self.stderr.flush()
