"""A complete bot: create an instance, show its QR, learn that it connected, answer messages."""

import asyncio
import secrets

from aiohttp import web

from wachat_async import AsyncWachat
from wachat_async.qr import render_terminal
from wachat_async.webhooks import ConnectionUpdate, MessageReceived, WebhookEvent, WebhookReceiver


async def run_bot(public_url: str, port: int, host: str = "0.0.0.0") -> None:
    async with AsyncWachat() as wa:  # WACHAT_API_KEY (and WACHAT_BASE_URL) from the environment
        created = await wa.instances.create("support_bot")
        name = created.instance.api_instance_name
        if created.qrcode and created.qrcode.code:
            print(render_terminal(created.qrcode.code))  # scan: WhatsApp > Linked devices
        secret = secrets.token_urlsafe(32)
        events = ["connection.update", "messages.upsert"]
        await wa.webhooks.upsert(public_url, instance_name=name, secret=secret, events=events)

        async def on_event(event: WebhookEvent) -> None:
            if isinstance(event, ConnectionUpdate) and event.state == "open":
                print(f"{name} is connected")
            elif isinstance(event, MessageReceived) and not event.from_me and event.sender_number:
                await wa.messages.send_text(name, event.sender_number, f"You said: {event.text}")

        runner = web.AppRunner(WebhookReceiver(secret, on_event).app())  # 401 if unsigned
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(run_bot("http://127.0.0.1:8080/wachat", port=8080, host="127.0.0.1"))
