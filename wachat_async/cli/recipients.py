"""A broadcast's input: the recipients CSV, the message its rows fill in, and the opt-out file.

The CSV has a ``number`` column (the recipient), optionally ``instance`` (the API name it is
sent from; else ``--instance``) and ``key`` (what makes a row one message within the campaign;
else the number and instance); every column is a template value. It is read lazily, a row at a
time, as often as the command needs (a plan, then the run): nothing keeps all its rows.

Each row becomes a :class:`~wachat_async.SendSpec`, or, when the CSV itself gets it wrong (a
template value missing, no instance, cells past the header), a :class:`RowProblem` naming its
line. Numbers, repeats and opt-outs are the library's to judge (``send_many`` while sending,
:func:`wachat_async.bulk.plan` for a dry run and the ETA: the same rules).
"""

from __future__ import annotations

import mimetypes
import string
from array import array
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import attrs

from ..bulk import SendSpec, opt_out_number, render_template
from ..errors import InvalidRequestError
from ..models import MediaMessage, MediaType, MessagePayload, TextMessage
from .outcome import CliError
from .sheet import data_records, read_header, too_many_cells

NUMBER, INSTANCE, KEY = "number", "instance", "key"
COLUMNS = f"{NUMBER} (required), {INSTANCE}, {KEY}, and template values"


@attrs.frozen
class Template:
    """The message every row sends: ``text`` with its ``{placeholders}`` filled from the row;
    with ``media_url`` (placeholders allowed too) a media message, the text its caption."""

    text: str
    media_url: str | None = None
    media_type: MediaType | None = None
    #: Every placeholder, in order of first appearance.
    placeholders: tuple[str, ...] = ()

    @classmethod
    def given(cls, text: str, media_url: str | None, media_type: str | None) -> Template:
        """The template of ``--text``, ``--media-url`` and ``--media-type``; a
        :class:`CliError` when one is not valid."""
        if media_url is None and media_type is not None:
            raise CliError("--media-type goes with --media-url")
        names = _placeholders("--text", text)
        if media_url is None:
            return cls(text, placeholders=names)
        names += _placeholders("--media-url", media_url)
        kind = MediaType(media_type) if media_type else _media_type(media_url)
        return cls(text, media_url, kind, tuple(dict.fromkeys(names)))

    def message(self, values: Mapping[str, str]) -> MessagePayload:
        """The message for one row; InvalidRequestError when a placeholder has no value."""
        text = render_template(self.text, values)
        if self.media_url is None or self.media_type is None:
            return TextMessage(text)
        url = render_template(self.media_url, values)
        return MediaMessage(url, media_type=self.media_type, caption=text)


def _placeholders(flag: str, template: str) -> tuple[str, ...]:
    """The placeholders of ``template``; a :class:`CliError` when it is not a valid one (the
    library's rules: tried on made-up values)."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError:
        names = []  # render_template says what is wrong
    try:
        render_template(template, dict.fromkeys(names, "x"))
    except InvalidRequestError as exc:
        raise CliError(f"{flag}: {exc}") from None
    return tuple(dict.fromkeys(names))


def _media_type(url: str) -> MediaType:
    """The media type a URL's file name says (``.jpg``: image; ``.pdf``: document)."""
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    if guessed is not None:
        kind = guessed.split("/")[0]
        return next((t for t in MediaType if t.value == kind), MediaType.DOCUMENT)
    choices = ", ".join(t.value for t in MediaType)
    raise CliError(
        f"--media-url {url}: its file name does not say what it is; give --media-type ({choices})"
    )


@attrs.frozen
class RowProblem:
    """A row the CSV gets wrong; it is never sent."""

    line: int
    instance: str | None
    recipient: str
    error: str


@attrs.frozen
class Recipients:
    """The recipients CSV of one campaign, its header checked against the template."""

    path: Path
    header: tuple[str, ...]
    template: Template
    campaign: str
    #: The instance of rows without one of their own (``--instance``).
    instance: str | None

    @classmethod
    def open(
        cls, path: Path, template: Template, *, campaign: str, instance: str | None
    ) -> Recipients:
        """Check the header: a :class:`CliError` (nothing sent) when it lacks a column."""
        header = read_header(path, required=NUMBER, columns=COLUMNS)
        unknown = [name for name in template.placeholders if name not in header]
        if unknown:
            braced = ", ".join(f"{{{name}}}" for name in unknown)
            raise CliError(
                f"the message uses {braced}, but {path} has no such column "
                f"(its columns: {', '.join(header)})"
            )
        if INSTANCE not in header and instance is None:
            raise CliError(
                f"{path} has no {INSTANCE} column: give --instance API_NAME, the instance "
                "every row is sent from"
            )
        return cls(path, header, template, campaign, instance)

    def rows(self) -> Iterator[tuple[int, SendSpec | RowProblem]]:
        """Each row (blank ones left out) with the line it starts on."""
        for line, cells in data_records(self.path):
            yield line, self._row(line, cells)

    def _row(self, line: int, cells: list[str]) -> SendSpec | RowProblem:
        values = {column: text.strip() for column, text in zip(self.header, cells, strict=False)}
        recipient = values.get(NUMBER, "")
        instance = values.get(INSTANCE) or self.instance
        too_many = too_many_cells(self.header, cells)
        if too_many is not None:
            return RowProblem(line, instance, recipient, too_many)
        if not instance:
            problem = f"no instance: the {INSTANCE} cell is empty and no --instance was given"
            return RowProblem(line, None, recipient, problem)
        try:
            message = self.template.message(values)
        except InvalidRequestError as exc:
            return RowProblem(line, instance, recipient, str(exc))
        key = values.get(KEY)
        return SendSpec(
            instance=instance,
            recipient=recipient,
            message=message,
            key=f"{self.campaign}:{key}" if key else None,
        )

    def key_cell(self, spec: SendSpec) -> str | None:
        """The ``key`` cell a row's spec was made with, if it had one."""
        return None if spec.key is None else spec.key.removeprefix(f"{self.campaign}:")


class SpecStream:
    """The rows as ``send_many`` reads them: specs, lazily. ``on_start()`` runs when the
    first is asked for (the journal is open by then, nothing is sent yet); a row the CSV gets
    wrong goes to ``on_problem`` instead. ``line_of(index)`` is the line of the ``index``-th
    spec handed on."""

    def __init__(
        self,
        recipients: Recipients,
        *,
        on_start: Callable[[], None],
        on_problem: Callable[[RowProblem], None],
    ) -> None:
        self._recipients = recipients
        self._on_start = on_start
        self._on_problem = on_problem
        self._lines = array("I")  # 4 bytes a row: lines, not rows, are kept

    def __iter__(self) -> Iterator[SendSpec]:
        self._on_start()
        for line, row in self._recipients.rows():
            if isinstance(row, RowProblem):
                self._on_problem(row)
            else:
                self._lines.append(line)
                yield row

    def line_of(self, index: int) -> int:
        return self._lines[index]


def read_opt_out(path: Path) -> frozenset[str]:
    """The numbers of an opt-out file: one a line; ``#`` starts a comment, blank lines are
    skipped. A :class:`CliError` naming the line for one that is not a number."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CliError(f"no such opt-out file: {path}") from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CliError(f"--opt-out {path} is not UTF-8 text (line {line})") from None
    numbers: set[str] = set()
    for line, raw in enumerate(text.splitlines(), 1):
        entry = raw.split("#", 1)[0].strip()
        if entry:
            try:
                numbers.add(opt_out_number(NUMBER, entry))
            except InvalidRequestError as exc:
                raise CliError(f"--opt-out {path}, line {line}: {exc}") from None
    return frozenset(numbers)
