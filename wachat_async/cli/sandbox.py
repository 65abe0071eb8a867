"""``wachat sandbox``: run a fake Wachat until Ctrl-C; and, with a verb, act on a running one as
the phone and the customer (through its control endpoints, :mod:`.control`).

    wachat sandbox --port 8099 --auto-scan 5          # serve; prints base URL, key, dev phone
    wachat sandbox scan t1_..._store                  # the phone scans the QR code
    wachat sandbox message t1_..._store --from 628111222333 "Hi!"   # a customer writes
    wachat sandbox sent t1_..._store                  # what the bot sent
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .._config import API_KEY_ENV, BASE_URL_ENV
from .connect import sandbox_key
from .control import SandboxControl
from .outcome import EXIT_OK, CliError
from .output import Output, value
from .parser import Parser, Subcommands, add_command

_NAME = "the instance's API name (or its friendly name, when no other instance has it)"


def add_commands(commands: Subcommands, common: Parser) -> None:
    sandbox = add_command(
        commands,
        common,
        "sandbox",
        "run a fake Wachat until Ctrl-C; or, with a verb, act on a running one as the phone "
        "and the customer",
        description="Without a verb: run a fake Wachat (the sandbox) until Ctrl-C and print its "
        "base URL, the API key it accepts, its dev phone page and its control URL. With a "
        "verb: act on a running sandbox (found from --base-url or $WACHAT_BASE_URL).",
    )
    serve = sandbox.add_argument_group("serving")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1; beyond loopback, the control "
        "endpoints ask for the key)",
    )
    serve.add_argument("--port", type=int, default=0, help="default: any free port")
    serve.add_argument(
        "--auto-scan",
        type=float,
        metavar="SECONDS",
        help="connect each new instance this long after its creation, as a phone would",
    )
    serve.add_argument(
        "--rate-limit",
        type=int,
        metavar="PER_MINUTE",
        help="answer 429 beyond this many sends per instance per minute",
    )
    serve.add_argument(
        "--strict",
        action="store_true",
        help="anti-spam: a burst of sends (more than 3 within 5 s) disconnects the instance",
    )
    sandbox.set_defaults(run=run_serve)
    verbs = sandbox.add_subparsers(dest="verb", metavar="[VERB]")

    def verb(name: str, summary: str, run: Callable[..., Any], *, instance: bool = True) -> Parser:
        parser = add_command(verbs, common, name, summary)
        if instance:
            parser.add_argument("name", help=_NAME)
        parser.set_defaults(run=run)
        return parser

    scan = verb("scan", "the phone scans the QR code: the instance connects", run_scan)
    scan.add_argument("--profile-name", help="the WhatsApp profile name it shows")
    verb("disconnect", "the phone unlinks: the instance disconnects", run_disconnect)
    verb("rotate-qr", "issue a new QR code now (as expiry would)", run_rotate_qr)
    message = verb(
        "message",
        "a customer's message comes in (delivered, signed, to the instance's webhooks)",
        run_message,
    )
    message.add_argument(
        "--from", dest="sender", required=True, metavar="NUMBER", help="the customer's number"
    )
    message.add_argument("--push-name", help="the customer's WhatsApp name")
    message.add_argument("text", help="what the customer writes")
    verb("sent", "what was sent from the instance (by your bot), oldest first", run_sent)
    verb("received", "what customers sent to the instance, oldest first", run_received)
    verb("deliveries", "the webhook delivery log", run_deliveries, instance=False)


# -- serving --------------------------------------------------------------------------------


async def run_serve(args: argparse.Namespace, out: Output) -> int:
    from ..testing import FakeWachat

    if args.sandbox:
        raise CliError("`wachat sandbox` is the sandbox: leave out --sandbox")
    key = args.api_key or sandbox_key()  # given here, it is the sandbox's own, chosen for it
    server = FakeWachat(
        api_keys={key},
        host=args.host,
        port=args.port,
        auto_scan=args.auto_scan,
        send_rate_limit=args.rate_limit,
        strict=args.strict,
    )
    with _until_stopped() as stopped:
        async with server:
            where = {
                "base_url": server.base_url,
                "api_key": key,
                "dev_phone_url": server.dev_phone_url,
                "control_url": server.control_url,
            }
            if out.json:
                out.document(where)
            else:
                out.say("Wachat sandbox running; Ctrl-C to stop.", style="bold green")
                out.record(where)
                out.say("For other programs (and the sandbox verbs):")
                out.say(f"  export {BASE_URL_ENV}={server.base_url}")
                out.say(f"  export {API_KEY_ENV}={key}")
            await stopped.wait()
    out.say("Sandbox stopped.")
    return EXIT_OK


@contextlib.contextmanager
def _until_stopped() -> Iterator[asyncio.Event]:
    """An event set by Ctrl-C or SIGTERM: the normal end of a sandbox, exit status 0."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stopped.set)
    try:
        yield stopped
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


# -- the phone and the customer -------------------------------------------------------------


def _control(args: argparse.Namespace) -> SandboxControl:
    if args.sandbox:
        raise CliError(
            "the sandbox verbs act on a running `wachat sandbox`, not on --sandbox (which lives "
            "only inside one command)"
        )
    return SandboxControl(args.base_url, args.api_key, args.timeout)


async def _act(args: argparse.Namespace, out: Output, action: str, body: dict[str, Any]) -> int:
    answer = await _control(args).instance_call("POST", args.name, action, body)
    view: dict[str, Any] = answer.get("instance") or {}
    if out.json:
        out.document(view)
        return EXIT_OK
    out.say(value(view.get("api_name")), " is now ", value(view.get("state")))
    qrcode = view.get("qrcode") or {}
    out.record(
        {
            "api_name": view.get("api_name"),
            "display_name": view.get("display_name"),
            "state": view.get("state"),
            "profile_name": view.get("profile_name"),
            "qr_count": qrcode.get("count"),
        }
    )
    return EXIT_OK


async def run_scan(args: argparse.Namespace, out: Output) -> int:
    body = {"profile_name": args.profile_name} if args.profile_name else {}
    return await _act(args, out, "scan", body)


async def run_disconnect(args: argparse.Namespace, out: Output) -> int:
    return await _act(args, out, "disconnect", {})


async def run_rotate_qr(args: argparse.Namespace, out: Output) -> int:
    return await _act(args, out, "rotate-qr", {})


async def run_message(args: argparse.Namespace, out: Output) -> int:
    body = {"from": args.sender, "text": args.text}
    if args.push_name:
        body["push_name"] = args.push_name
    answer = await _control(args).instance_call("POST", args.name, "messages", body)
    if out.json:
        out.document({"instance": args.name, "id": answer.get("id")})
    else:
        out.say("Delivered to ", value(args.name), " as message ", value(answer.get("id")))
    return EXIT_OK


async def run_sent(args: argparse.Namespace, out: Output) -> int:
    answer = await _control(args).instance_call("GET", args.name, "sent")
    sent: list[dict[str, Any]] = answer.get("sent") or []
    rows = [
        {
            "at": _when(item.get("at")),
            "id": item.get("id"),
            "path": item.get("path"),
            "to": (item.get("body") or {}).get("number"),
            "content": _content(item.get("body") or {}),
        }
        for item in sent
    ]
    return _listing(
        out, sent, rows, "Sent from " + args.name, ["at", "id", "path", "to", "content"]
    )


async def run_received(args: argparse.Namespace, out: Output) -> int:
    answer = await _control(args).instance_call("GET", args.name, "received")
    received: list[dict[str, Any]] = answer.get("received") or []
    rows = [{**item, "at": _when(item.get("at"))} for item in received]
    columns = ["at", "id", "from", "push_name", "text"]
    return _listing(out, received, rows, "Received by " + args.name, columns)


async def run_deliveries(args: argparse.Namespace, out: Output) -> int:
    answer = await _control(args).call("GET", "/deliveries")
    log: list[dict[str, Any]] = answer.get("deliveries") or []
    rows = [{**item, "at": _when(item.get("at"))} for item in log]
    columns = ["at", "event", "instance", "webhook_id", "status", "error"]
    return _listing(out, log, rows, "Webhook deliveries", columns)


def _listing(
    out: Output,
    items: list[dict[str, Any]],
    rows: Sequence[Mapping[str, object]],
    title: str,
    columns: list[str],
) -> int:
    if out.json:
        out.document(items)
    elif not rows:
        out.say(f"{title}: none yet.")
    else:
        out.table(rows, columns, title=title, whole=["id", "instance"])
    return EXIT_OK


def _when(at: object) -> str | None:
    if not isinstance(at, int | float):
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _content(body: Mapping[str, Any]) -> str:
    """What a sent message says, whatever its kind."""
    for key in ("message", "text", "caption", "mediaUrl", "media", "name", "title"):
        if isinstance(body.get(key), str):
            return str(body[key])
    return ", ".join(f"{k}={v}" for k, v in body.items() if k != "number")
