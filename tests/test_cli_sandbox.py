"""``wachat sandbox``: a real sandbox process, acted on by other ``wachat`` processes as the phone
and the customer, with a webhook receiver of the test's own getting the signed deliveries;
then a whole bot's round trip (create, scan, a customer writes, the bot answers)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

from tests.conftest import serving
from tests.test_cli_helpers import Done, env, running_sandbox, spawn, wachat
from wachat_async import AsyncWachat
from wachat_async.webhooks import ConnectionUpdate, MessageReceived, WebhookEvent, WebhookReceiver


async def run(*args: str, environ: dict[str, str]) -> Done:
    """``wachat ARGS`` in another process, without blocking the test's loop (its webhook
    receiver must answer meanwhile)."""
    return await asyncio.to_thread(wachat, *args, environ=environ)


async def until(check: Callable[[], bool], timeout: float = 30) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


def test_sandbox_prints_where_it_is_and_stops_on_ctrl_c() -> None:
    with running_sandbox("--auto-scan", "60") as sandbox:
        assert sandbox.base_url.startswith("http://127.0.0.1:")
        assert sandbox.base_url.endswith("/api/v1")
        assert sandbox.api_key.startswith("sandbox-")
        assert (
            sandbox.dev_phone_url == sandbox.base_url.removesuffix("/api/v1") + "/_sandbox/phone/"
        )
        assert sandbox.control_url == sandbox.base_url.removesuffix("/api/v1") + "/_sandbox"
        sandbox.process.send_signal(signal.SIGINT)
        assert sandbox.process.wait(timeout=30) == 0

    process = spawn("sandbox", "--api-key", "my-own-sandbox-key", environ=env())
    assert process.stdout is not None
    lines = [process.stdout.readline()]
    while "export WACHAT_API_KEY" not in lines[-1]:
        lines.append(process.stdout.readline())
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    text = "".join(lines) + rest
    assert "api_key=my-own-sandbox-key" in text
    assert "dev_phone_url=http://127.0.0.1:" in text
    assert "export WACHAT_BASE_URL=http://127.0.0.1:" in text
    assert "Sandbox stopped." in text


async def test_the_phone_and_the_customer_from_the_command_line() -> None:
    events: list[WebhookEvent] = []

    async def on_event(event: WebhookEvent) -> None:
        events.append(event)

    secret = "whsec_cli_test"
    with running_sandbox() as sandbox:
        environ = sandbox.env()
        created = await run("--json", "instances", "create", "bot_store", environ=environ)
        assert created.code == 0, created.err
        name = created.json()["api_instance_name"]
        async with (
            serving(WebhookReceiver(secret, on_event).app()) as receiver_url,
            AsyncWachat(sandbox.api_key, base_url=sandbox.base_url) as wa,
        ):
            await wa.webhooks.upsert(
                receiver_url + "/", instance_name=name, secret=secret, events=["*"]
            )
            rotated = await run("--json", "sandbox", "rotate-qr", name, environ=environ)
            assert rotated.json()["qrcode"]["count"] == 2

            scanned = await run("sandbox", "scan", name, "--profile-name", "Toko", environ=environ)
            assert scanned.code == 0, scanned.err
            assert f"{name} is now open" in scanned.out
            assert (await wa.instances.state(name)).is_connected
            await until(lambda: any(isinstance(e, ConnectionUpdate) for e in events))

            said = await run(
                "--json", "sandbox", "message", name, "--from", "628111222333",
                "--push-name", "Budi", "[b]Halo\x1b[2J", environ=environ,
            )  # fmt: skip
            assert said.code == 0, said.err
            message_id = said.json()["id"]
            await until(lambda: any(isinstance(e, MessageReceived) for e in events))
            received = next(e for e in events if isinstance(e, MessageReceived))
            assert received.text == "[b]Halo\x1b[2J"  # delivered signed: the receiver checked
            assert received.sender_number == "628111222333"

            listed = await run("sandbox", "received", name, environ=environ)
            assert f"{message_id}\t628111222333\tBudi\t[b]Halo\\x1b[2J" in listed.out

            sent = await run("send", "text", name, "628111222333", "Terima kasih", environ=environ)
            assert sent.code == 0, sent.err
            sent_id = sent.out.split("message_id=")[1].split()[0]
            log = await run("--json", "sandbox", "sent", name, environ=environ)
            assert [(s["id"], s["body"]["message"]) for s in log.json()] == [
                (sent_id, "Terima kasih")
            ]
            deliveries = await run("--json", "sandbox", "deliveries", environ=environ)
            upserts = [d for d in deliveries.json() if d["event"] == "messages.upsert"]
            assert [(d["instance"], d["status"]) for d in upserts] == [(name, 200)]

            gone = await run("sandbox", "disconnect", name, environ=environ)
            assert "is now close" in gone.out
            assert not (await wa.instances.state(name)).is_connected


async def test_sandbox_verbs_fail_cleanly() -> None:
    done = await run("sandbox", "scan", "x", environ=env())
    assert done.code == 2
    assert "--base-url" in done.err
    assert done.err.count("\n") == 1
    nowhere = env(WACHAT_BASE_URL="http://127.0.0.1:9/api/v1")
    done = await run("--json", "sandbox", "deliveries", environ=nowhere)
    assert done.code == 1
    assert done.error()["type"] == "SandboxUnreachable"
    with running_sandbox() as sandbox:
        done = await run("--json", "sandbox", "scan", "nobody", environ=sandbox.env())
        assert done.code == 1
        assert done.error() == {
            "type": "SandboxError",
            "message": "404 No single instance named 'nobody' "
            "(POST /_sandbox/instances/nobody/scan)",
            "hint": None,
        }


def bot_answers(
    wa: AsyncWachat, name: str, answered: asyncio.Event
) -> Callable[[WebhookEvent], Awaitable[None]]:
    async def on_event(event: WebhookEvent) -> None:
        if isinstance(event, MessageReceived) and event.sender_number and not event.from_me:
            await wa.messages.send_text(name, event.sender_number, f"You said: {event.text}")
            answered.set()

    return on_event


async def test_a_bot_built_against_wachat_sandbox_end_to_end() -> None:
    """The bot is the library; the phone, the customer and the checks are the command."""
    answered = asyncio.Event()
    with running_sandbox() as sandbox:
        environ = sandbox.env()
        created = await run("--json", "instances", "create", "echo", environ=environ)
        name = created.json()["api_instance_name"]
        assert (await run("sandbox", "scan", name, environ=environ)).code == 0
        async with AsyncWachat(sandbox.api_key, base_url=sandbox.base_url) as wa:
            app = web.Application()
            app.router.add_post(
                "/hook", WebhookReceiver("s3cret", bot_answers(wa, name, answered)).handle
            )
            async with serving(app) as url:
                await wa.webhooks.upsert(url + "/hook", instance_name=name, secret="s3cret")
                await run(
                    "sandbox", "message", name, "--from", "628999111222", "ping", environ=environ
                )
                await asyncio.wait_for(answered.wait(), 30)
        sent = await run("--json", "sandbox", "sent", name, environ=environ)
    assert [(s["body"]["number"], s["body"]["message"]) for s in sent.json()] == [
        ("628999111222", "You said: ping")
    ]
