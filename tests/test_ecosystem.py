"""The client among other software: default headers, an explicit proxy and the standard proxy
variables, a client reused across ``asyncio.run()`` calls (and refused on a second running
loop), Jupyter's rich display of a QR code, and the sandbox's message ids."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import FAST_RETRY, serving, without_slow_callback_reports
from tests.conftest import KEY as SANDBOX_KEY
from tests.edges import KEY, Front, raw_server
from wachat_async import (
    APIConnectionError,
    AsyncWachat,
    FailureClass,
    QrCode,
    SendResult,
    Wachat,
)
from wachat_async._config import Settings
from wachat_async._proxy import proxy_for
from wachat_async.qr import PNG_SIGNATURE
from wachat_async.testing import FakeWachat, Fault

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
async def fake() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys={KEY}, qr_pool=2) as server:
        yield server


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# -- default headers --------------------------------------------------------------------------


async def every_kind_of_call(wa: AsyncWachat, fake: FakeWachat) -> None:
    created = await wa.instances.create("shop")
    name = created.instance.api_instance_name
    await wa.instances.list()
    await wa.instances.state(name)
    await wa.instances.qr(name)
    await wa.instances.qr_image(name)
    await wa.webhooks.upsert("https://hooks.example/x")
    await wa.request("GET", "/instance/list")
    fake.scan(name)
    await wa.messages.send_text(name, "628123456789", "hi")
    fake.inject(Fault.status(503), path="/instance/list")
    await wa.instances.list()  # a retried call: both attempts carry them


@pytest.mark.parametrize("own_session", [False, True])
async def test_default_headers_arrive_on_every_request(fake: FakeWachat, own_session: bool) -> None:
    async with Front(fake) as api:
        session = aiohttp.ClientSession() if own_session else None
        try:
            async with AsyncWachat(
                KEY,
                base_url=api.base_url,
                retry_policy=FAST_RETRY,
                default_headers={"X-Tenant": "a", "X-Trace": "café"},
                session=session,
            ) as wa:
                await every_kind_of_call(wa, fake)
        finally:
            if session is not None:
                await session.close()
    assert len(api.headers) >= 10
    for headers in api.headers:
        assert headers["X-Tenant"] == "a"
        assert headers["X-Trace"] == "café"
        assert headers["Authorization"] == f"Bearer {KEY}"


# -- proxies ------------------------------------------------------------------------------------


#: A plain-http API's name that only the proxy below resolves (to the fake server): an
#: environment proxy never carries a loopback http call, so those tests need a name that is not.
HTTP_API_HOST = "api.wachat.test"


def http_api(base_url: str) -> str:
    return base_url.replace("127.0.0.1", HTTP_API_HOST, 1)


class ForwardProxy:
    """A loopback HTTP forward proxy: takes absolute-form requests, forwards them, counts them."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.url = ""
        self._session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        assert self._session is not None
        target = request.raw_path
        if not target.startswith("http://"):
            return web.Response(status=400, text="not a proxy request")
        self.seen.append(f"{request.method} {target}")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        body = await request.read()
        target = target.replace(f"http://{HTTP_API_HOST}:", "http://127.0.0.1:", 1)
        async with self._session.request(
            request.method, target, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            kept = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() in ("content-type", "x-instance-name", "x-api-instance-name", "date")
            }
            return web.Response(status=upstream.status, body=await upstream.read(), headers=kept)


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    forward = ForwardProxy()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward.handle)
    async with aiohttp.ClientSession(trust_env=False) as session, serving(app) as url:
        forward._session = session
        forward.url = url
        yield forward


async def test_explicit_proxy_carries_every_request(fake: FakeWachat, proxy: ForwardProxy) -> None:
    async with AsyncWachat(
        KEY, base_url=fake.base_url, proxy=proxy.url, retry_policy=FAST_RETRY
    ) as wa:
        await every_kind_of_call(wa, fake)
    api_requests = len(fake.requests)
    assert api_requests >= 10
    assert len(proxy.seen) == api_requests
    assert all(line.split()[1].startswith(fake.base_url) for line in proxy.seen)


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
async def test_environment_proxy_is_honoured(
    fake: FakeWachat, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, proxy.url)
    base_url = http_api(fake.base_url)
    async with AsyncWachat(KEY, base_url=base_url, allow_insecure_http=True) as wa:
        await wa.instances.list()
        await wa.instances.create("shop")
    assert len(proxy.seen) == 2
    assert len(fake.requests) == 2


async def test_an_environment_proxy_never_carries_a_loopback_http_call(
    fake: FakeWachat, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
        await wa.instances.list()
    assert not proxy.seen
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "*", "127.0.0.1:1,127.0.0.1"]
)
def test_no_proxy_bypasses(monkeypatch: pytest.MonkeyPatch, no_proxy: str) -> None:
    """Decided for an https API on loopback (a loopback http one never takes a proxy)."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    settings = Settings(KEY, base_url="https://127.0.0.1:8443/api/v1")
    assert proxy_for(settings) == "http://127.0.0.1:3128"
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert proxy_for(settings) is None


async def test_trust_env_false_ignores_the_environment(
    fake: FakeWachat, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    settings = Settings(KEY, base_url="https://127.0.0.1:8443/api/v1", trust_env=False)
    assert proxy_for(settings) is None
    async with AsyncWachat(KEY, base_url=fake.base_url, proxy=proxy.url, trust_env=False) as wa:
        await wa.instances.list()  # an explicit proxy is not the environment's
    assert len(proxy.seen) == 1


async def test_https_proxy_variable_is_used_for_https_and_a_refusal_is_not_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No TLS needed: the proxy sees the CONNECT for the https API and refuses it. The request
    never reached the API, so it is "not sent" (retried, even a create)."""
    connects: list[str] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        connects.append(head.split(b"\r\n", 1)[0].decode())
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with raw_server(refuse) as url:
        monkeypatch.setenv("HTTPS_PROXY", url.removesuffix("/api/v1"))
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the wrong one for https
        async with AsyncWachat(
            KEY, base_url="https://api.wachat.invalid/api/v1", retry_policy=FAST_RETRY
        ) as wa:
            with pytest.raises(APIConnectionError) as caught:
                await wa.instances.create("shop")
    assert caught.value.failure is FailureClass.NOT_SENT
    assert caught.value.attempts == 3
    assert connects == ["CONNECT api.wachat.invalid:443 HTTP/1.1"] * 3


def test_sync_client_honours_the_environment(
    thread_server: FakeWachat, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    with proxy_in_thread(seen) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        remote = http_api(thread_server.base_url)
        with Wachat(SANDBOX_KEY, base_url=remote, allow_insecure_http=True) as wa:
            wa.instances.list()
        assert len(seen) == 1
        monkeypatch.setenv("NO_PROXY", HTTP_API_HOST)
        with Wachat(SANDBOX_KEY, base_url=remote, allow_insecure_http=True) as wa:
            assert proxy_for(wa.settings) is None  # so it would go direct (the name is fake)
        monkeypatch.delenv("NO_PROXY")
        with Wachat(SANDBOX_KEY, base_url=thread_server.base_url) as wa:  # loopback http
            wa.instances.list()
        assert len(seen) == 1
        with Wachat(SANDBOX_KEY, base_url=thread_server.base_url, proxy=proxy_url) as wa:
            wa.instances.list()
        assert len(seen) == 2
    assert len(thread_server.requests) == 3


@contextlib.contextmanager
def proxy_in_thread(seen: list[str]) -> Iterator[str]:
    """A ForwardProxy on its own loop in a thread (the sync client blocks the caller)."""
    loop = asyncio.new_event_loop()
    started, stop = threading.Event(), threading.Event()
    url: list[str] = []

    async def main() -> None:
        forward = ForwardProxy()
        forward.seen = seen
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward.handle)
        async with aiohttp.ClientSession(trust_env=False) as session, serving(app) as where:
            forward._session = session
            url.append(where)
            started.set()
            while not stop.is_set():
                await asyncio.sleep(0.02)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        yield url[0]
    finally:
        stop.set()
        thread.join(timeout=30)
        loop.close()


# -- event loops ----------------------------------------------------------------------------------

TWO_RUNS = """
import asyncio, sys
from wachat_async import AsyncWachat
from wachat_async.testing import FakeWachat

with FakeWachat.in_thread(api_keys={"k" * 40}) as fake:
    wa = AsyncWachat("k" * 40, base_url=fake.base_url)

    async def use(name):
        created = await wa.instances.create(name)
        await wa.instances.state(created.instance.api_instance_name)
        return len(await wa.instances.list())

    first = asyncio.run(use("first"))
    second = asyncio.run(use("second"))   # a new loop: the client rebinds
    if sys.argv[1] == "close":
        asyncio.run(wa.aclose())
    print(first, second, flush=True)
"""


@pytest.mark.parametrize("ending", ["close", "never_closed"])
def test_one_client_across_two_asyncio_runs(ending: str) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", TWO_RUNS, ending],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "2"]
    assert without_slow_callback_reports(result.stderr) == ""


async def test_a_client_in_use_refuses_a_second_running_loop(fake: FakeWachat) -> None:
    fake.inject(Fault.slow(0.5), path="/instance/list")
    async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
        first = asyncio.ensure_future(wa.instances.list())
        while not fake.requests:
            await asyncio.sleep(0.01)
        outcome: list[BaseException] = []

        def other_thread() -> None:
            try:
                asyncio.run(wa.instances.state("t1_a_b"))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        await asyncio.to_thread(thread.join, 30)
        assert await first == []
    (error,) = outcome
    assert isinstance(error, RuntimeError)
    assert "another event loop" in str(error)
    assert "one client per event loop" in str(error)
    assert len(fake.requests) == 1


# -- what notebooks and bots see ------------------------------------------------------------------


async def test_qr_code_renders_in_jupyter(fake: FakeWachat) -> None:
    async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
        created = await wa.instances.create("shop")
        fresh = await wa.instances.qr(created.instance.api_instance_name)
    for qrcode in (created.qrcode, fresh):
        assert isinstance(qrcode, QrCode)
        png = qrcode._repr_png_()
        assert png is not None
        assert png.startswith(PNG_SIGNATURE)
        assert png == qrcode.png_bytes()
        html = qrcode._repr_html_()
        assert html is not None
        assert html.startswith("<img")
        assert "data:image/png;base64," in html
    assert QrCode(code="x")._repr_png_() is None
    assert QrCode(code="x")._repr_html_() is None


async def test_send_result_carries_the_sandboxs_message_id(fake: FakeWachat) -> None:
    async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
        name = (await wa.instances.create("shop")).instance.api_instance_name
        fake.scan(name)
        results: list[SendResult] = [
            await wa.messages.send_text(name, "628123456789", "hi"),
            await wa.messages.send_media(
                name, "628123456789", "https://x.example/a.png", media_type="image"
            ),
            await wa.messages.send_location(name, "628123456789", latitude=1.0, longitude=2.0),
            await wa.messages.send_buttons(name, "628123456789", text="?", buttons=["Yes"]),
        ]
    sent = fake.sent_messages(name)
    assert [r.message_id for r in results] == [m["id"] for m in sent]
    assert all(r.message_id for r in results)
    assert len({r.message_id for r in results}) == len(results)
