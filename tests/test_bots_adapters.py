"""The bot in the frameworks bots run in, each served for real on loopback and driven by a
Customer through the sandbox: ASGI under uvicorn (a bare Starlette app, and FastAPI), Flask and
Django (sync, over Wachat, on their own WSGI servers)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import aiohttp
import pytest

from tests.conftest import KEY
from wachat_async import AsyncWachat, InvalidRequestError, Wachat
from wachat_async.bots import Bot, F, Message, Router
from wachat_async.bots.adapters import asgi_app, django_view, flask_view
from wachat_async.testing import Customer, FakeWachat

NUMBER = "628555000111"


def echo_router() -> Router:
    router = Router()

    @router.message(F.text("ping", ignore_case=True))
    async def ping(message: Message) -> None:
        await message.reply("pong")

    @router.fallback
    async def echo(message: Message) -> None:
        await message.reply(f"echo {message.text}")

    return router


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def talk(server: FakeWachat, instance: str) -> None:
    async with Customer(server.control_url, instance, NUMBER) as customer:
        await customer.send("PING")
        assert (await customer.expect_reply()).text == "pong"
        await customer.send("hello")
        assert (await customer.expect_reply()).text == "echo hello"
        await server_flushed(server)
        await customer.expect_no_more()


async def server_flushed(server: FakeWachat) -> None:
    if server._loop is asyncio.get_running_loop():
        await server.flush_deliveries()


async def unsigned_is_refused(url: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(url, data=b"{}") as resp:
        assert resp.status == 401


@contextlib.asynccontextmanager
async def uvicorn_serving(app: Any) -> AsyncIterator[str]:
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def new_instance(server: FakeWachat, wa: AsyncWachat) -> str:
    name = (await wa.instances.create("shop")).instance.api_instance_name
    server.scan(name)
    return name


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
async def test_asgi(server: FakeWachat, wa: AsyncWachat, framework: str) -> None:
    instance = await new_instance(server, wa)
    secret = secrets.token_urlsafe(16)
    receiver = Bot(echo_router(), wa).receiver(secret)
    if framework == "starlette":
        from starlette.applications import Starlette
        from starlette.routing import Mount

        app: Any = Starlette(routes=[Mount("/wachat", app=asgi_app(receiver))])
    else:
        fastapi = pytest.importorskip("fastapi")
        app = fastapi.FastAPI()
        app.mount("/wachat", asgi_app(receiver))
    async with uvicorn_serving(app) as base:
        await wa.webhooks.upsert(base + "/wachat/", instance_name=instance, secret=secret)
        await talk(server, instance)
        await unsigned_is_refused(base + "/wachat/")
        await receiver.drain()


@contextlib.contextmanager
def wsgi_serving(app: Callable[..., Any]) -> Iterator[str]:
    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join()
        httpd.server_close()


def flask_app(view: Callable[[], Any]) -> Any:
    import flask

    app = flask.Flask("shop")
    app.add_url_rule("/wachat", view_func=view, methods=["POST"])
    return app


def django_app(view: Callable[[Any], Any]) -> Any:
    import django  # type: ignore[import-untyped]
    from django.conf import settings  # type: ignore[import-untyped]
    from django.urls import path  # type: ignore[import-untyped]

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="tests",
            ALLOWED_HOSTS=["127.0.0.1"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
        )
        django.setup()
    global urlpatterns
    urlpatterns = [path("wachat", view)]
    from django.core.wsgi import get_wsgi_application  # type: ignore[import-untyped]

    return get_wsgi_application()


urlpatterns: list[Any] = []


@pytest.mark.parametrize("framework", ["flask", "django"])
def test_sync_frameworks_over_wachat(thread_server: FakeWachat, framework: str) -> None:
    with Wachat(KEY, base_url=thread_server.base_url, settle_delay=0.1) as wa:
        instance = wa.instances.create("shop").instance.api_instance_name
        thread_server.scan(instance)
        secret = secrets.token_urlsafe(16)
        receiver = Bot(echo_router(), wa).sync_receiver(secret)
        if framework == "flask":
            app = flask_app(flask_view(receiver))
        else:
            app = django_app(django_view(receiver))
        with wsgi_serving(app) as base:
            wa.webhooks.upsert(base + "/wachat", instance_name=instance, secret=secret)
            asyncio.run(talk(thread_server, instance))
            asyncio.run(unsigned_is_refused(base + "/wachat"))
        receiver.drain()


async def test_a_sync_receiver_needs_a_wachat(wa: AsyncWachat) -> None:
    with pytest.raises(InvalidRequestError, match="needs a bot built on a Wachat"):
        Bot(echo_router(), wa).sync_receiver("s" * 16)
    with pytest.raises(InvalidRequestError, match="AsyncWachat or a Wachat"):
        Bot(echo_router(), "client")  # type: ignore[arg-type]
