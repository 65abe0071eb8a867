"""The ``wachat`` command (also ``python -m wachat_async``). Needs the ``cli`` extra.

    wachat --sandbox provision examples/stores.csv --out qr-codes/
    wachat instances create jakarta_store --number 628123456789 --wait
    wachat sandbox --port 8099

Modules: ``parser`` (the command line), ``output`` (all printing: rich, plain, JSON),
``outcome`` (exit statuses, failures, interruptions), ``connect`` (the client), ``common``
(what every command shares: the library's hints in the command line's words), one module per
command group (``instances``, ``send``, ``provision``, ``sandbox``), ``broadcast`` (``send
broadcast``), what provisioning and broadcasts read and write (``sheet``, ``recipients``,
``pngnames``, ``manifest``); ``control`` talks to a running sandbox.

A bare ``wachat`` prints its help and exits 0 (as ``pip`` and ``docker`` do; ``git`` exits 1):
asking what the command does is not a mistake, and nothing was attempted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence

from ..errors import APIError
from .outcome import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    failure_of,
)

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:  # here, not at the top: without the cli extra, say so instead of a traceback
        from . import dedupe, instances, provision, report, sandbox, send
        from .common import phrased_for_cli
        from .output import Output
        from .parser import Command, build_parser, parse, wants_json
    except ImportError as exc:  # pragma: no cover - depends on the install
        sys.stderr.write(
            f"The wachat command needs the cli extra ({exc.name} is missing): "
            "pip install 'wachat-async[cli]'\n"
        )
        return EXIT_USAGE
    out = Output(json_mode=wants_json(words))
    # dedupe joins the instances command
    groups = [group.add_commands for group in (instances, dedupe, send, report, provision, sandbox)]
    if not words:  # what a newcomer types first asks what the command does: not an error
        build_parser(groups).print_help()
        return EXIT_OK
    try:
        args = parse(words, groups)
        out = Output(json_mode=args.json)
        command: Command = args.run
        return asyncio.run(command(args, out))
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except BrokenPipeError:  # the reader went away (`| head`): nobody is left to tell
        _silence_stdout()
        return EXIT_FAILED
    except (Exception, KeyboardInterrupt) as exc:
        failure = failure_of(exc)
        if failure is None:
            raise  # a bug: its traceback is what a report needs
        if isinstance(exc, APIError):
            failure = phrased_for_cli(failure, exc)
        out.fail(failure)
        return failure.exit_code


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush cannot fail too."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
