"""``wachat instances``: create (and wait for the scan), list, state, qr, delete."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from ..client import AsyncWachat
from ..errors import APIError, ConflictError, NotFoundError, WachatError, WaitTimeoutError
from ..models import CreatedInstance, InstanceInfo, InstanceState, Integration, QrCode
from ..resources.instances import AsyncInstances
from .common import LOGOUT_METHOD, LOGOUT_PATH, hint_code
from .connect import connect
from .fields import BOOLEAN_FIELDS, CREATE_FIELDS
from .outcome import EXIT_OK, CliError, OperationFailed, interrupted_as
from .output import Output, candidates, to_jsonable, value
from .parser import Parser, Subcommands, add_command, add_seconds

T = TypeVar("T")

_API_NAME = (
    "API instance name (t1_..._store), as create printed it; a friendly name is looked up "
    "when exactly one instance has it"
)
_LOGOUT_NOTE = (
    f"Logout has no published path: the command sends {LOGOUT_METHOD} {LOGOUT_PATH} (what the "
    "sandbox answers) and, where the server has none, says how else to log out."
)
_WAIT_TIMEOUT: float = (
    inspect.signature(AsyncInstances.wait_until_connected).parameters["timeout"].default
)


def add_commands(commands: Subcommands, common: Parser) -> None:
    group = add_command(
        commands, common, "instances", "create, list, inspect, log out, delete instances"
    )
    ops = group.add_subparsers(dest="operation", required=True, metavar="OPERATION")

    create = add_command(ops, common, "create", "create an instance and show its QR code")
    create.add_argument("name", help="friendly instance name (you choose it)")
    _create_field_options(create)
    _qr_options(create, png="--qr-png")
    create.add_argument(
        "--wait",
        action="store_true",
        help="wait until the QR code is scanned, showing each new one (with --json: one "
        "object per line, then {'event': 'connected', ...})",
    )
    add_seconds(create, "--wait-timeout", "give up waiting after this long", _WAIT_TIMEOUT)
    create.set_defaults(run=run_create)

    listing = add_command(ops, common, "list", "list the account's instances")
    listing.set_defaults(run=run_list)

    state = add_command(ops, common, "state", "an instance's connection state")
    state.set_defaults(run=run_state)
    logout = _with_logout_note(ops, common, "logout", "log an instance out (unlink its phone)")
    logout.set_defaults(run=run_logout)
    delete = _with_logout_note(
        ops, common, "delete", "delete an instance (a connected one must be logged out first)"
    )
    delete.add_argument("--logout", action="store_true", help="log a connected instance out first")
    delete.set_defaults(run=run_delete)
    for sub in (state, logout, delete):
        sub.add_argument("name", help=_API_NAME)

    qr = add_command(ops, common, "qr", "a fresh QR code for an instance waiting to be scanned")
    qr.add_argument("name", help=_API_NAME)
    _qr_options(qr, png="--png", show="--show")
    qr.set_defaults(run=run_qr)


def _with_logout_note(ops: Subcommands, common: Parser, name: str, summary: str) -> Parser:
    return add_command(ops, common, name, summary, description=f"{summary}. {_LOGOUT_NOTE}")


_FIELD_HELP = {
    "number": "WhatsApp number with country code (628123456789)",
    "integration": "default: WHATSAPP-BAILEYS (QR code); WHATSAPP-BUSINESS needs the --meta-*",
}


def _create_field_options(create: Parser) -> None:
    """An option per create field (``--number``, ``--reject-calls/--no-reject-calls``, ...);
    one not given is not sent."""
    fields = create.add_argument_group("create fields (only those given are sent)")
    for name in CREATE_FIELDS[1:]:
        flag = "--" + name.replace("_", "-")
        if name in BOOLEAN_FIELDS:
            fields.add_argument(flag, action=argparse.BooleanOptionalAction)
        elif name == "integration":
            choices = [i.value for i in Integration]
            fields.add_argument(flag, choices=choices, help=_FIELD_HELP[name])
        else:
            fields.add_argument(flag, help=_FIELD_HELP.get(name))


def _qr_options(parser: Parser, *, png: str, show: str | None = None) -> None:
    parser.add_argument(png, dest="png", type=Path, metavar="PATH", help="save the QR as a PNG")
    parser.add_argument(
        "--show-qr",
        *([show] if show else []),
        dest="show_qr",
        action="store_true",
        help="draw the QR code even when stdout is not a terminal (on stderr with --json)",
    )


# -- create ---------------------------------------------------------------------------------


async def run_create(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wa:
        with interrupted_as(
            "Interrupted while the create was on its way: the instance may or may not exist.",
            [f"look for {args.name!r}: {_again(args, 'instances', 'list')}"],
        ):
            created = await wa.instances.create(args.name, **_given_fields(args))
        api_name = created.instance.api_instance_name
        what = "Interrupted while waiting for the scan." if args.wait else "Interrupted."
        with interrupted_as(_exists(args, api_name, what), _continue(args, api_name)):
            qrcode = await _first_qr(wa, created)
            saved, problem = _save(qrcode, args.png)
            _show_created(out, created, qrcode, saved)
            if qrcode is not None and qrcode.code:
                out.qr(qrcode.code, force=args.show_qr)
            if problem is not None:
                raise OperationFailed(
                    f"{problem}. {_exists(args, api_name, '').strip()}",
                    hints=_continue(args, api_name),
                )
            if not args.wait:
                out.note("Every later command takes the API name: ", value(api_name))
                return EXIT_OK
            state = await _wait(wa, args, out, api_name, qrcode)
    if out.json:
        out.document({"event": "connected", "state": to_jsonable(state)})
    else:
        out.note("Connected: ", value(api_name, "bold green"))
        out.record(_state_fields(state))
    return EXIT_OK


def _given_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields = {name: getattr(args, name) for name in CREATE_FIELDS[1:]}
    return {name: given for name, given in fields.items() if given is not None}


def _save(qrcode: QrCode | None, png: Path | None) -> tuple[str | None, str | None]:
    """Save the QR as a PNG where asked: the path it is in, and why it is not when it could
    not be written (reported once the API name is out)."""
    if png is None or qrcode is None or not qrcode.base64:
        return None, None
    try:
        qrcode.save(png)
    except (OSError, ValueError) as exc:
        return None, f"The QR code was not saved to {png}: {exc}"
    return str(png), None


async def _first_qr(wa: AsyncWachat, created: CreatedInstance) -> QrCode | None:
    """The QR the create brought, or (when it could not fetch one) a fresh one; None for
    instances without a QR code, or when it cannot be had now (``qr_error`` says why)."""
    if created.qrcode is not None or created.instance.integration == Integration.WHATSAPP_BUSINESS:
        return created.qrcode
    with contextlib.suppress(WachatError):
        return await wa.instances.qr(created.instance.api_instance_name)
    return None


def _show_created(
    out: Output, created: CreatedInstance, qrcode: QrCode | None, saved: str | None
) -> None:
    instance = created.instance
    if out.json:
        out.document(
            {
                "api_instance_name": instance.api_instance_name,
                "instance_name": instance.instance_name,
                "integration": instance.integration,
                "number": instance.number,
                "reconciled": created.reconciled,
                "qrcode": qrcode,
                "qr_error": None if qrcode is not None else created.qr_error,
                "qr_png": saved,
            }
        )
        return
    out.note("Created ", value(instance.api_instance_name, "bold green"))
    out.record(
        {
            "api_instance_name": instance.api_instance_name,
            "instance_name": instance.instance_name,
            "integration": instance.integration,
            "number": instance.number,
            "pairing_code": qrcode.pairing_code if qrcode else None,
            "qr_png": saved,
            "qr_error": None if qrcode is not None else created.qr_error,
            "reconciled": "yes (its answer was lost; found by listing)"
            if created.reconciled
            else None,
        }
    )


async def _wait(
    wa: AsyncWachat,
    args: argparse.Namespace,
    out: Output,
    api_name: str,
    shown: QrCode | None,
) -> InstanceState:
    last = shown.code if shown is not None else None

    def on_qr(qrcode: QrCode) -> None:
        nonlocal last
        if qrcode.code == last:
            return
        last = qrcode.code
        if args.png is not None and qrcode.base64:
            qrcode.save(args.png)
        if out.json:
            out.document({"event": "qrcode", "api_instance_name": api_name, "qrcode": qrcode})
            return
        out.note("A new QR code (the last one expired):", style="yellow")
        if qrcode.code:
            out.qr(qrcode.code, force=args.show_qr)
        if qrcode.pairing_code:
            out.note("pairing code: ", value(qrcode.pairing_code))

    out.note("Waiting for the QR code to be scanned (WhatsApp > Linked devices); Ctrl-C to stop.")
    try:
        return await wa.instances.wait_until_connected(
            api_name, timeout=args.wait_timeout, on_qr=on_qr
        )
    except WaitTimeoutError as exc:
        raise OperationFailed(
            f"{exc}. {_exists(args, api_name, '').strip()}",
            kind=type(exc).__name__,
            hints=_continue(args, api_name),
        ) from None


def _exists(args: argparse.Namespace, api_name: str, what: str) -> str:
    if args.sandbox:
        return (
            f"{what} The instance {api_name} lived in this command's sandbox, which is gone "
            "with it."
        )
    return f"{what} The instance exists: {api_name}"


def _continue(args: argparse.Namespace, api_name: str) -> list[str]:
    """How to go on with an instance that exists (none for the in-process sandbox)."""
    if args.sandbox:
        return []
    return [
        f"show its QR code again: {_again(args, 'instances', 'qr', api_name)}",
        f"see whether it is linked: {_again(args, 'instances', 'state', api_name)}",
        "(running create again would make a second instance)",
    ]


def _again(args: argparse.Namespace, *words: str) -> str:
    """A command line to type next: the same server, never the key."""
    where = ["--base-url", args.base_url] if args.base_url else []
    return shlex.join(["wachat", *where, *words])


# -- list, state, qr, delete ----------------------------------------------------------------


async def run_list(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wa:
        infos = await wa.instances.list()
    if out.json:
        out.document(infos)
        return EXIT_OK
    if not infos:
        out.say("No instances.")
        return EXIT_OK
    columns = ["api_instance_name", "instance_name", "state", "number", "profile_name"]
    columns.append("created_at")
    out.table(
        [{c: getattr(i, c) for c in columns} for i in infos],
        columns,
        title=f"Instances ({len(infos)})",
        whole=["api_instance_name", "state"],
        optional=["profile_name", "number", "created_at"],
        one_line=True,
    )
    return EXIT_OK


_STATE_FIELDS = ("api_instance_name", "instance_name", "state", "profile_name", "number")


def _state_fields(state: InstanceState) -> dict[str, Any]:
    return {field: getattr(state, field) for field in (*_STATE_FIELDS, "integration")}


async def run_state(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wa:
        state = await _by_name(wa, args.name, out, wa.instances.state)
    if out.json:
        out.document(state)
    else:
        out.record(_state_fields(state))
    return EXIT_OK


async def run_qr(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wa:
        qrcode = await _by_name(wa, args.name, out, wa.instances.qr)
    if args.png is not None:
        qrcode.save(args.png)
    saved = None if args.png is None else str(args.png)
    if out.json:
        out.document({"api_instance_name": args.name, "qrcode": qrcode, "qr_png": saved})
        return EXIT_OK
    if qrcode.code:
        out.qr(qrcode.code, force=args.show_qr)
    out.record(
        {
            "api_instance_name": args.name,
            "pairing_code": qrcode.pairing_code,
            "qr_count": qrcode.count,
            "qr_png": saved,
        }
    )
    return EXIT_OK


async def run_logout(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wa:
        api_name = await _by_name(wa, args.name, out, lambda name: _logout(wa, name))
    if out.json:
        out.document({"logged_out": api_name})
    else:
        out.say("Logged out ", value(api_name), "; it can be deleted now")
    return EXIT_OK


async def run_delete(args: argparse.Namespace, out: Output) -> int:
    async def delete(name: str) -> str:
        try:
            await wa.instances.delete(name)
        except ConflictError as exc:
            if not args.logout:
                raise OperationFailed(
                    f"{name} is connected, and a connected instance cannot be deleted "
                    f"({exc.status_code} {exc.message})",
                    kind=type(exc).__name__,
                    hints=[
                        f"log it out first: {_again(args, 'instances', 'logout', name)}",
                        f"or in one step: {_again(args, 'instances', 'delete', '--logout', name)}",
                    ],
                ) from None
            await _logout(wa, name)
            await wa.instances.delete(name)
        return name

    async with connect(args) as wa:
        api_name = await _by_name(wa, args.name, out, delete, gone="is already gone")
    if out.json:
        out.document({"deleted": api_name})
    else:
        out.say("Deleted ", value(api_name))
    return EXIT_OK


async def _logout(wa: AsyncWachat, api_name: str) -> str:
    """Log ``api_name`` out through the stand-in path; a server without it says how else."""
    try:
        await wa.request(LOGOUT_METHOD, LOGOUT_PATH, params={"instanceName": api_name})
    except APIError as exc:
        if exc.status_code not in (404, 405) or not await _is_instance(wa, api_name):
            raise
        raise OperationFailed(
            f"this server has no logout at {LOGOUT_METHOD} {LOGOUT_PATH} (the sandbox's; "
            f"Wachat has not published its own), so {api_name} was not logged out",
            kind="LogoutUnavailable",
            hints=[
                "log it out from the phone: WhatsApp > Linked devices > the device > Log out",
                f"a running `wachat sandbox`: wachat sandbox disconnect {api_name}",
                "then delete it",
            ],
        ) from None
    return api_name


async def _is_instance(wa: AsyncWachat, api_name: str) -> bool:
    return any(i.api_instance_name == api_name for i in await wa.instances.list())


async def _by_name(
    wa: AsyncWachat,
    name: str,
    out: Output,
    call: Callable[[str], Awaitable[T]],
    *,
    gone: str = "is not there",
) -> T:
    """``call(name)`` for an API name; when no instance has that API name, for the one instance
    whose friendly name it is (said first). Otherwise says why not: no instance has the name
    (``name`` + ``gone``), or several have it as a friendly name (listed)."""
    try:
        return await call(name)
    except NotFoundError as exc:
        if hint_code(exc) == "not_wachat":
            raise
        infos = await wa.instances.list()
        if any(i.api_instance_name == name for i in infos):  # the 404 was about something else
            raise
    friends = [i for i in infos if i.instance_name == name]
    if len(friends) == 1:
        api_name = friends[0].api_instance_name
        out.note(f"{name} is the friendly name of ", value(api_name), ": using that")
        return await call(api_name)
    if friends:
        raise CliError(
            f"{len(friends)} instances have the friendly name {name}: give the API name of one",
            hints=_candidates(friends),
        )
    raise OperationFailed(
        f"{name} {gone}: no instance has that API name (nor that friendly name)",
        kind="NotFoundError",
        hints=["`wachat instances list` shows the instances there are"],
    )


def _candidates(infos: list[InstanceInfo]) -> list[str]:
    return candidates((i.api_instance_name, i.state, i.created_at) for i in infos)
