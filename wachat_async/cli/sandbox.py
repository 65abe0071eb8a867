"""``wachat sandbox``: run a fake Wachat until Ctrl-C; and, with a verb, act on a running one as
the phone and the customer (through its control endpoints, :mod:`.control`).

    wachat sandbox --auto-scan 5                      # serve; prints base URL, key, dev phone
    wachat sandbox scan t1_..._store                  # the phone scans the QR code
    wachat sandbox message t1_..._store --from 628111222333 "Hi!"   # a customer writes
    wachat sandbox sent t1_..._store                  # what the bot sent
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._config import API_KEY_ENV, BASE_URL_ENV
from .connect import sandbox_key
from .control import SandboxControl
from .outcome import EXIT_OK, CliError
from .output import Output, value
from .parser import Parser, Subcommands, add_command, global_options

if TYPE_CHECKING:
    from ..testing import FakeWachat

_NAME = "the instance's API name (or its friendly name, when no other instance has it)"

#: The sandbox's port unless told otherwise, so that exported URLs outlive a restart.
DEFAULT_PORT = 8765


def add_commands(commands: Subcommands, common: Parser) -> None:
    common = global_options(sandbox=False)  # the sandbox is not run inside itself
    sandbox = add_command(
        commands,
        common,
        "sandbox",
        "run a fake Wachat until Ctrl-C; or, with a verb, act on a running one as the phone "
        "and the customer",
        description="Without a verb: run a fake Wachat (the sandbox) until Ctrl-C and print its "
        "base URL, the API key it accepts, its dev phone page and its control URL. It keeps "
        f"its address and key across restarts: port {DEFAULT_PORT} (another free one, said at "
        f"start, when that is taken), and the key --api-key gives, else ${API_KEY_ENV}, else a "
        "new random one (printed; a key from the environment is not). With a verb: act on a "
        f"running sandbox (found from --base-url or ${BASE_URL_ENV}).",
    )
    serve = sandbox.add_argument_group("serving")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1; beyond loopback, the control "
        "endpoints ask for the key)",
    )
    serve.add_argument(
        "--port",
        type=int,
        help=f"port to listen on (default: {DEFAULT_PORT}, else any free one; 0: any free one)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name it answers for (as other containers reach it; by default only "
        "its own address, against DNS rebinding)",
    )
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
    if args.sandbox:
        raise CliError("`wachat sandbox` is the sandbox: leave out --sandbox")
    # Given here or in the environment, it is the sandbox's own key, chosen for it; one from
    # the environment may be a real one, so it is not printed.
    env_key = os.environ.get(API_KEY_ENV, "").strip()
    key = args.api_key or env_key or sandbox_key()
    from_env = not args.api_key and key == env_key
    with _until_stopped() as stopped:
        server, taken = await _start(args, key)
        try:
            where = {
                "base_url": server.base_url,
                "api_key": None if from_env else key,
                "dev_phone_url": server.dev_phone_url,
                "control_url": server.control_url,
            }
            if out.json:
                out.document(where)
            else:
                _say_where(out, server, where, key=key, from_env=from_env, taken=taken)
            await stopped.wait()
        finally:
            await server.close()
    out.say("Sandbox stopped.")
    return EXIT_OK


def _say_where(
    out: Output,
    server: FakeWachat,
    where: Mapping[str, object],
    *,
    key: str,
    from_env: bool,
    taken: bool,
) -> None:
    out.say("Wachat sandbox running; Ctrl-C to stop.", style="bold green")
    if taken:
        out.say(
            f"Port {DEFAULT_PORT} is taken (another sandbox?): using {server.port}, which a "
            "restart may not get again (--port keeps one)."
        )
    out.record({**where, "api_key": f"${API_KEY_ENV} (not shown)" if from_env else key})
    out.say("For other programs (and the sandbox verbs):")
    out.say(f"  export {BASE_URL_ENV}={server.base_url}")
    if not from_env:
        out.say(f"  export {API_KEY_ENV}={key}")
    port = "" if taken else " port and"  # a taken default port: said above
    if from_env:
        out.say(f"A restart keeps this{port} key.")
    else:
        out.say(f"A restart keeps this{port} key when {API_KEY_ENV} is exported as above.")


async def _start(args: argparse.Namespace, key: str) -> tuple[FakeWachat, bool]:
    """The started sandbox, on ``--port``; by default on :data:`DEFAULT_PORT`, or any free
    port when that is taken (then True, to say so)."""
    from ..testing import FakeWachat

    def on(port: int) -> FakeWachat:
        try:
            return FakeWachat(
                api_keys={key},
                host=args.host,
                port=port,
                auto_scan=args.auto_scan,
                send_rate_limit=args.rate_limit,
                strict=args.strict,
                allowed_hosts=args.allow_host,
            )
        except ValueError as exc:
            raise CliError(f"--allow-host: {exc}") from None

    server = on(DEFAULT_PORT if args.port is None else args.port)
    try:
        await server.start()
    except OSError as exc:
        await server.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        if args.port is not None:
            raise CliError(
                f"port {args.port} is taken (another sandbox?)",
                hint="stop the other one, or pick another port (--port 0: any free one)",
            ) from None
        server = on(0)
        await server.start()
        return server, True
    return server, False


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
    if any(item.get("url") for item in log):  # where each went, when the sandbox says
        columns.insert(4, "url")
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
        out.table(rows, columns, title=title, whole=["id", "instance", "url"])
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
