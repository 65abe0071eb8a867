"""The command line: global options (accepted before or after the command) and the command tree,
each group added by its own module.

Global options are added to every parser of the tree with ``default=SUPPRESS``, so that one given
anywhere survives (a sub-parser's default would otherwise overwrite it); :func:`parse` then fills
in the defaults of those not given. Defaults come from where they are defined: the client's
``timeout`` from :class:`~wachat_async._config.Settings`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn, TypeAlias

import attrs

from .._config import API_KEY_ENV, BASE_URL_ENV, Settings
from .._version import __version__
from .outcome import CliError
from .output import Output

#: What a command runs: its arguments and where to print; returns the exit status.
Command = Callable[[argparse.Namespace, Output], Coroutine[Any, Any, int]]

#: The global options that were not given take these values.
GLOBAL_DEFAULTS: dict[str, Any] = {
    "api_key": None,
    "base_url": None,
    "sandbox": False,
    "json": False,
    "timeout": attrs.fields(Settings).timeout.default,
}


class Parser(argparse.ArgumentParser):
    """Reports a usage error as a :class:`CliError` (shown as JSON with ``--json``) instead of
    printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{self.prog}: {message}", hints=[" ".join(self.format_usage().split())])


Subcommands: TypeAlias = "argparse._SubParsersAction[Parser]"


#: Commands that are a sandbox themselves, or act on a running one: ``--sandbox`` (a sandbox
#: inside the command) is not offered there.
_SANDBOX_COMMAND = "sandbox"


def add_command(
    commands: Subcommands, common: Parser, name: str, summary: str, **kwargs: Any
) -> Parser:
    """A command of the tree: it takes the global options too (but ``--sandbox`` not under
    ``wachat sandbox``)."""
    within = getattr(commands, "_prog_prefix", "").split()[1:]  # "wachat instances" -> below
    if _SANDBOX_COMMAND in [*within, name]:
        common = global_options(sandbox=False)
    return commands.add_parser(
        name,
        parents=[common],
        help=summary,
        description=kwargs.pop("description", summary),
        **kwargs,
    )


def global_options(*, sandbox: bool = True) -> Parser:
    """The options every parser of the tree takes, before or after the command (without
    ``--sandbox`` unless ``sandbox``)."""
    common = Parser(add_help=False)
    group = common.add_argument_group("global options (before or after the command)")
    group.add_argument(
        "--api-key", default=argparse.SUPPRESS, help=f"API key (default: ${API_KEY_ENV})"
    )
    group.add_argument(
        "--base-url",
        default=argparse.SUPPRESS,
        help=f"API base URL (default: ${BASE_URL_ENV}, else Wachat's)",
    )
    if sandbox:
        group.add_argument(
            "--sandbox",
            action="store_true",
            default=argparse.SUPPRESS,
            help="run a fake Wachat inside this command and use it (it forgets all at exit)",
        )
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="JSON output (one document, or one object per line for streams); errors too",
    )
    add_seconds(group, "--timeout", "seconds per request", GLOBAL_DEFAULTS["timeout"], given=True)
    return common


def add_seconds(
    parser: argparse._ActionsContainer,
    flag: str,
    summary: str,
    default: float,
    *,
    given: bool = False,
) -> None:
    """An option in seconds, its default shown; with ``given``, left out unless given (a
    global option)."""
    parser.add_argument(
        flag,
        type=float,
        default=argparse.SUPPRESS if given else default,
        metavar="SECONDS",
        help=f"{summary} (default: {default:g})",
    )


def subcommands_of(commands: Subcommands, name: str) -> Subcommands:
    """The operations of command ``name``, for a module that adds one of its own."""
    group = commands.choices[name]
    return next(a for a in group._actions if isinstance(a, argparse._SubParsersAction))


#: What a command group module offers: it adds its commands to the tree.
AddCommands: TypeAlias = Callable[[Subcommands, Parser], None]


def build_parser(groups: Sequence[AddCommands]) -> Parser:
    """The whole command line: the global options and every group's commands."""
    common = global_options()
    parser = Parser(
        prog="wachat",
        description="The Wachat Enterprise API (hosted WhatsApp gateway) from the command line.",
        epilog="Exit status: 0 done, 1 the operation failed, 2 usage or input problem "
        "(nothing sent), 130 interrupted.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"wachat-async {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_commands in groups:
        add_commands(commands, common)
    return parser


def parse(argv: Sequence[str], groups: Sequence[AddCommands]) -> argparse.Namespace:
    refuse_unencodable(argv)
    args = build_parser(groups).parse_args(argv)
    for name, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    return args


def wants_json(argv: Sequence[str]) -> bool:
    """Whether ``--json`` was asked for, before the command line is known to parse."""
    return "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv


def refuse_unencodable(argv: Sequence[str]) -> None:
    """A :class:`CliError` naming the first argument that is not text (bytes that are not
    UTF-8 reach Python as lone surrogates, which no request, file or terminal can take)."""
    for position, word in enumerate(argv):
        try:
            word.encode("utf-8")
        except UnicodeEncodeError as exc:
            before = argv[position - 1] if position else ""
            where = (
                f"the value of {before}"
                if before.startswith("-") and "=" not in before
                else f"argument {position + 1}"
            )
            raise CliError(
                f"{where} ({word[:40]!a}) is not valid text: character {exc.start + 1} is "
                "not UTF-8; check the encoding of the shell or of the file it came from"
            ) from None
