"""Everything the command prints, in its three forms.

- **rich**: stdout is a terminal. Tables whose identifier columns (API instance names) are
  never cut: when a table cannot show them whole at the terminal's width, the records are
  shown one ``key: value`` per line instead. QR codes drawn, a progress bar (with a bar per
  part below it: a broadcast's instances).
- **plain**: stdout is a pipe or a file. No box drawing, no colour, no truncation: a table is
  a tab-separated header line and one record per line; a record is ``key: value`` lines.
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
from collections.abc import Collection, Iterator, Mapping, Sequence
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

    def _line(self, line: Text) -> None:
        if self.interactive:
            self.console.print(line)
        else:
            self.stdout.write(line.plain + "\n")
            self.stdout.flush()

    def record(self, fields: Mapping[str, object]) -> None:
        """One record as ``key: value`` lines (empty values left out)."""
        if self.json:
            return
        shown = {k: cell(v) for k, v in fields.items() if v is not None and v != ""}
        pad = max((len(k) for k in shown), default=0) if self.interactive else 0
        for key, text in shown.items():
            self._line(Text.assemble(_key(key, pad), text))

    def table(
        self,
        rows: Sequence[Mapping[str, object]],
        columns: Sequence[str],
        *,
        title: str | None = None,
        whole: Collection[str] = (),
    ) -> None:
        """Records as a table. Columns in ``whole`` are never cut nor wrapped (identifiers:
        API instance names, file names); the others may wrap on a terminal."""
        if self.json:
            return
        cells = [[cell(row.get(c)) for c in columns] for row in rows]
        if not self.interactive:
            for line in (list(columns), *cells):
                self.stdout.write("\t".join(line) + "\n")
            self.stdout.flush()
            return
        if not self._fits(columns, cells, whole):
            self._vertical(columns, cells, title)
            return
        table = Table(title=title, title_justify="left", safe_box=True)
        for index, column in enumerate(columns):
            keep = column in whole
            widest = max((cell_len(c) for c in [column] + [r[index] for r in cells]), default=1)
            table.add_column(
                column,
                no_wrap=keep,
                min_width=widest if keep else None,
                overflow="ignore" if keep else "fold",
            )
        for line in cells:
            table.add_row(*(Text(c) for c in line))
        self.console.print(table)

    def _fits(self, columns: Sequence[str], cells: list[list[str]], whole: Collection[str]) -> bool:
        """Whether a table shows ``whole`` columns in full, the others folded no narrower than
        :data:`_FOLDED_WIDTH`, within the terminal's width."""
        need = 3 * len(columns) + 1  # a border and a space either side of each column
        for index, column in enumerate(columns):
            widest = max([cell_len(column)] + [cell_len(r[index]) for r in cells])
            need += widest if column in whole else min(widest, _FOLDED_WIDTH)
        return need <= self.console.width

    def _vertical(self, columns: Sequence[str], cells: list[list[str]], title: str | None) -> None:
        if title:
            self.console.print(Text(literal(title), style="bold"))
        pad = max(len(c) for c in columns)
        for number, line in enumerate(cells):
            if number:
                self.console.print()
            for column, text in zip(columns, line, strict=True):
                if text:
                    self.console.print(Text.assemble(_key(column, pad), text))

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
        lines += [Text("  " + literal(hint)) for hint in failure.hints]
        for line in lines:
            if self.errors.is_terminal:
                self.errors.print(line)
            else:
                self.stderr.write(line.plain + "\n")
        self.stderr.flush()
