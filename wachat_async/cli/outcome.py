"""How a command ends: its exit status, and what a failure or an interruption says.

Exit statuses: 0 done, 1 the operation failed (the server said no, a row failed, a file could
not be written), 2 a usage, input or journal problem (nothing was sent), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Iterator, Sequence

import attrs

from ..errors import APIError, InvalidRequestError, JournalError, WachatError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CliError(Exception):
    """A problem the command reports in one line (usage, input, a file): exit status 2."""

    exit_code = EXIT_USAGE
    kind = "UsageError"

    def __init__(self, message: str, *, hint: str | None = None, hints: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: More lines for a person (a usage line).
        self.hints = tuple(hints)


class OperationFailed(CliError):
    """An operation that failed without a library error (the sandbox said no): exit status 1."""

    exit_code = EXIT_FAILED
    kind = "OperationFailed"

    def __init__(
        self,
        message: str,
        *,
        kind: str | None = None,
        hint: str | None = None,
        hints: Sequence[str] = (),
    ) -> None:
        super().__init__(message, hint=hint, hints=hints)
        if kind is not None:
            self.kind = kind


def row_error(error: BaseException) -> str:
    """A row's error for its results file: a bad value says only what is wrong with it; other
    errors are named by type."""
    return (
        str(error) if isinstance(error, InvalidRequestError) else f"{type(error).__name__}: {error}"
    )


def refuse_journal_in_sandbox(args: argparse.Namespace) -> None:
    if args.sandbox and args.journal is not None:
        raise CliError(
            "--journal with --sandbox: the sandbox forgets everything at exit, so there is "
            "nothing to resume"
        )


class Interrupted(Exception):
    """Ctrl-C, with what is true at that moment: what exists, and how to go on."""

    def __init__(self, message: str, hints: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hints = tuple(hints)


@contextlib.contextmanager
def interrupted_as(message: str, hints: Sequence[str] = ()) -> Iterator[None]:
    """Ctrl-C within this block ends the command saying ``message`` and ``hints``: what is
    true at that point. (asyncio turns Ctrl-C into the cancellation of the command.)"""
    try:
        yield
    except asyncio.CancelledError:
        raise Interrupted(message, hints) from None


@attrs.frozen
class Failure:
    """A failure as it is shown: ``type``, the message, a hint, and the exit status."""

    type: str
    #: In its own words (a server's message as the server wrote it).
    message: str
    exit_code: int
    hint: str | None = None
    #: More lines for a person (the ways to go on after an interruption).
    hints: tuple[str, ...] = ()
    status_code: int | None = None
    #: The one line a person reads, when it says more than ``message`` (status, path, hint).
    line: str | None = None

    @property
    def text(self) -> str:
        return self.line or self.message

    def as_json(self) -> dict[str, object]:
        error: dict[str, object] = {"type": self.type, "message": self.message, "hint": self.hint}
        if self.status_code is not None:
            error["status_code"] = self.status_code
        if self.hints:
            error["next"] = list(self.hints)
        return {"error": error}


def failure_of(exc: BaseException) -> Failure | None:
    """How ``exc`` is reported, or None when it is not a failure the command expects (a bug)."""
    if isinstance(exc, Interrupted):
        return Failure("Interrupted", exc.message, EXIT_INTERRUPTED, hints=exc.hints)
    if isinstance(exc, KeyboardInterrupt):
        return Failure("Interrupted", "Interrupted.", EXIT_INTERRUPTED)
    if isinstance(exc, CliError):
        return Failure(exc.kind, exc.message, exc.exit_code, hint=exc.hint, hints=exc.hints)
    if isinstance(exc, APIError):
        return Failure(
            type(exc).__name__,
            exc.message,
            EXIT_FAILED,
            hint=exc.hint,
            status_code=exc.status_code,
            line=f"{type(exc).__name__}: {exc}",
        )
    if isinstance(exc, InvalidRequestError | JournalError):
        return Failure(type(exc).__name__, str(exc), EXIT_USAGE)
    if isinstance(exc, WachatError):
        kind = type(exc).__name__
        return Failure(kind, str(exc), EXIT_FAILED, line=f"{kind}: {exc}")
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return Failure(type(exc).__name__, f"{where}{exc.strerror or exc}", EXIT_FAILED)
    return None
