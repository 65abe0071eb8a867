"""The benchmark server: canned Wachat answers, in a process of its own, pinned to its own core.

A canned answer costs the server almost nothing, so what is measured is the client. Each
answer size has its own base URL: ``/min/api/v1`` answers a create with the instance alone,
``/qr/api/v1`` with a realistic QR code (a ~6 KB data URL); ``/full/api/v1`` and
``/full_qr/api/v1`` with every documented field of the create answer (``instance-create.md``:
the instance's seven, the QR's ``pairingCode``, ``code``, ``base64``, ``imageUrl``, ``liveUrl``
and ``count``, and ``qrError``), with a minimal QR and with the 6 KB one. State and sends
answer as Wachat does. The server remembers when each instance's sends arrived
(``GET /stats/sends``), so that pacing is measured where it matters.

Prints its port on stdout, then serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator

from aiohttp import web

API_KEY = "bench-key"
API_NAME = "t1_mq9r2jov_jakarta_store"

_INSTANCE = {
    "id": 26,
    "instanceName": "jakarta_store",
    "displayName": "jakarta_store",
    "apiInstanceName": API_NAME,
    "internalName": API_NAME,
    "number": "628123456789",
    "integration": "WHATSAPP-BAILEYS",
}
_QR = {
    "pairingCode": "PKRFWHWE",
    "code": "2@" + "x" * 200,
    # A QR PNG's data URL is about 6 KB.
    "base64": "data:image/png;base64,"
    + base64.b64encode(random.Random(1).randbytes(4500)).decode(),
    "imageUrl": f"https://app.wachat.net/api/v1/instance/qr/image?instanceName={API_NAME}",
    "liveUrl": f"https://app.wachat.net/api/v1/instance/qr/live?instanceName={API_NAME}",
    "count": 1,
}
#: The smallest QR a server could send: a 1x1 PNG's data URL.
_MINIMAL_QR = {
    **_QR,
    "code": "2@" + "x" * 20,
    "base64": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42"
    "mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
}
CREATED = {
    "min": json.dumps({"success": True, "instance": _INSTANCE, "qrcode": None}).encode(),
    "qr": json.dumps({"success": True, "instance": _INSTANCE, "qrcode": _QR}).encode(),
    "full": json.dumps(
        {"success": True, "instance": _INSTANCE, "qrcode": _MINIMAL_QR, "qrError": None}
    ).encode(),
    "full_qr": json.dumps(
        {"success": True, "instance": _INSTANCE, "qrcode": _QR, "qrError": None}
    ).encode(),
}
STATE = json.dumps(
    {
        "success": True,
        "data": {"instance": {"instanceName": API_NAME, "state": "open"}},
        "instance": {
            "instanceName": "jakarta_store",
            "apiInstanceName": API_NAME,
            "internalName": API_NAME,
            "state": "open",
            "profileName": "Jakarta",
            "profilePictureUrl": None,
            "number": "628123456789",
            "owner": "628123456789@s.whatsapp.net",
            "integration": "WHATSAPP-BAILEYS",
        },
    }
).encode()
SENT = json.dumps(
    {
        "success": True,
        "message": "Message queued for dispatch",
        "data": {"id": "3EB0ABCDEF0123456789", "status": "PENDING"},
    }
).encode()


def app() -> web.Application:
    sends: defaultdict[str, list[float]] = defaultdict(list)
    application = web.Application()

    def answer(body: bytes, status: int = 200) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    for size, created in CREATED.items():
        prefix = f"/{size}/api/v1"

        async def create(request: web.Request, created: bytes = created) -> web.Response:
            await request.read()
            return answer(created, 201)

        async def state(request: web.Request) -> web.Response:
            return answer(STATE)

        async def send(request: web.Request) -> web.Response:
            body = await request.json()
            sends[body["instanceName"]].append(time.time())
            return answer(SENT)

        application.router.add_post(f"{prefix}/instance/create", create)
        application.router.add_get(f"{prefix}/instance/state", state)
        application.router.add_post(f"{prefix}/send/text", send)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(sends)

    async def reset(request: web.Request) -> web.Response:
        sends.clear()
        return web.json_response({})

    application.router.add_get("/stats/sends", stats)
    application.router.add_post("/stats/reset", reset)
    return application


async def serve() -> None:
    runner = web.AppRunner(app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    await runner.cleanup()


@contextlib.contextmanager
def spawned(cwd: str | os.PathLike[str]) -> Iterator[str]:
    """This server in a process of its own (so its work is not counted as the client's), for
    the ``with`` block; yields its root URL (``http://127.0.0.1:PORT``)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    assert server.stdout is not None
    assert server.stdin is not None
    try:
        yield f"http://127.0.0.1:{server.stdout.readline().strip()}"
    finally:
        server.stdin.close()  # its signal to stop
        server.wait(timeout=30)


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    asyncio.run(serve())
