"""What a proxy sees, and what a proxy's failure means.

The API key and the client's headers reach only the API: a CONNECT for an https target carries
nothing of ours (aiohttp copies a session's default headers into it, renaming Authorization to
Proxy-Authorization), and an absolute-form request for an http target carries the key only as
Authorization. A proxy that closes or refuses the tunnel means the request never left: "not
sent", so even a create is retried, and nothing is created twice.

The network runs on its own loop in a thread (the sync client blocks its caller): the fake
server, a TLS front for it (a certificate from a test CA that aiohttp's default context is told
to trust), and a recording proxy that tunnels to that front.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator

import aiohttp.connector
import attrs
import pytest
import trustme

from tests.conftest import FAST_RETRY, KEY
from wachat_async import APIConnectionError, AsyncWachat, FailureClass, Wachat
from wachat_async.testing import FakeWachat

#: aiohttp before 3.11 leaves the socket of a CONNECT the proxy hung up on to the garbage
#: collector (its own leak, reported as an unraisable ResourceWarning in whichever test runs
#: then); the tests that provoke it collect it themselves and, there only, let it pass.
OLD_AIOHTTP = "_retry_connection" not in getattr(aiohttp.ClientSession, "ATTRS", ())
collects_aiohttp_leak = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning" if OLD_AIOHTTP else "default"
)

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
HEADERS = {"X-Tenant": "acme", "user-agent": "shop-bot/2"}

Mode = str  # "tunnel", "close" (hang up on the CONNECT), "refuse" (403), "close_once"


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def trusted_ca() -> trustme.CA:
    """A test CA, trusted by the context aiohttp verifies https with unless told otherwise."""
    ca = trustme.CA()
    ca.configure_trust(aiohttp.connector._SSL_CONTEXT_VERIFIED)
    return ca


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    port: int,
    first: bytes = b"",
    on_data: Callable[[bytes], None] | None = None,
) -> None:
    up_reader, up_writer = await asyncio.open_connection(host, port)
    up_writer.write(first)

    async def forward() -> None:
        try:
            while data := await reader.read(65536):
                if on_data is not None:
                    on_data(data)
                up_writer.write(data)
                await up_writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            up_writer.close()

    await asyncio.gather(forward(), _pipe(up_reader, writer))


class Network:
    """The fake server behind a TLS front, and a proxy in ``mode`` that records what it got."""

    def __init__(self, fake: FakeWachat, ca: trustme.CA, front: socket.socket) -> None:
        self.fake = fake
        self.ca = ca
        self._front_socket = front
        self.mode: Mode = "tunnel"
        #: The head (request line and headers) of every CONNECT, as received.
        self.connects: list[bytes] = []
        #: Every byte of every plain (absolute-form) request the proxy forwarded.
        self.plain = bytearray()
        #: Every byte the API received through the TLS front, decrypted.
        self.api_wire = bytearray()
        self.https_base = self.proxy_url = ""
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    def _handled(
        self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        """``handler``, its task and writer remembered so that stopping can end them."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._handlers.add(task)
            self._writers.append(writer)
            try:
                await handler(reader, writer)
            finally:
                self._handlers.discard(task)

        return handle

    async def _front(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _splice(reader, writer, self.fake.host, self.fake.port, b"", self.api_wire.extend)

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":  # an http target: forward as it is, remembering every byte
            self.plain += head
            url = target.removeprefix("http://").split("/", 1)[0]
            host, port = url.rsplit(":", 1)
            await _splice(reader, writer, host, int(port), head, self.plain.extend)
            return
        self.connects.append(head)
        if self.mode == "close" or (self.mode == "close_once" and len(self.connects) == 1):
            writer.close()
            return
        if self.mode == "refuse":
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if self.mode == "hang":
            await reader.read()
            writer.close()
            return
        host, port = target.rsplit(":", 1)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await _splice(reader, writer, host, int(port))

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(server_tls)
        front = await asyncio.start_server(
            self._handled(self._front), sock=self._front_socket, ssl=server_tls
        )
        proxy = await asyncio.start_server(self._handled(self._proxy), "127.0.0.1", 0)
        self.https_base = f"https://127.0.0.1:{front.sockets[0].getsockname()[1]}/api/v1"
        self.proxy_url = f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}"
        ready.set()
        await self._stop.wait()
        front.close()
        proxy.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        await front.wait_closed()
        await proxy.wait_closed()
        await asyncio.sleep(0)  # let the transports finish closing

    @contextlib.contextmanager
    def running(self) -> Iterator[Network]:
        ready = threading.Event()
        thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._serve(ready),), daemon=True
        )
        thread.start()
        assert ready.wait(30)
        try:
            yield self
        finally:
            assert self._stop is not None
            self._loop.call_soon_threadsafe(self._stop.set)
            thread.join(30)
            self._loop.close()


def reserved_port() -> socket.socket:
    """A listening-ready loopback socket, bound before the fake server starts: a front that
    relays bytes to the fake is a port mapping, whose address the fake must be told it answers
    for (it refuses a Host that is not one of its own)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def front_address(sock: socket.socket) -> str:
    return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def network(trusted_ca: trustme.CA) -> Iterator[Network]:
    front = reserved_port()
    with (
        FakeWachat.in_thread(
            api_keys={KEY}, qr_pool=2, allowed_hosts=[front_address(front)]
        ) as fake,
        Network(fake, trusted_ca, front).running() as net,
    ):
        yield net


def assert_nothing_of_ours(heads: list[bytes]) -> None:
    assert heads, "the proxy saw no CONNECT"
    for head in heads:
        text = head.decode("latin-1").lower()
        assert KEY.lower() not in text
        assert "authorization" not in text
        assert "x-tenant" not in text
        assert "shop-bot" not in text
        assert "wachat-async" not in text


def header_lines(wire: bytes | bytearray, name: str) -> list[str]:
    """The values of every ``name:`` header line in a plain HTTP transcript."""
    prefix = f"{name}:"
    return [
        line.split(":", 1)[1].strip()
        for line in wire.decode("latin-1").split("\r\n")
        if line.lower().startswith(prefix)
    ]


async def calls(wa: AsyncWachat) -> None:
    created = await wa.instances.create("shop")
    await wa.instances.qr_image(created.instance.api_instance_name)  # another Accept
    await wa.instances.list()


# -- the key never reaches the proxy -----------------------------------------------------------


async def test_explicit_proxy_sees_no_key_in_connect(network: Network) -> None:
    async with AsyncWachat(
        KEY,
        base_url=network.https_base,
        proxy=network.proxy_url,
        default_headers=HEADERS,
        retry_policy=FAST_RETRY,
    ) as wa:
        await calls(wa)
    assert_nothing_of_ours(network.connects)
    # ... and the API got every header it should, once per request.
    assert len(network.fake.requests) == 3
    assert header_lines(network.api_wire, "authorization") == [f"Bearer {KEY}"] * 3
    assert header_lines(network.api_wire, "user-agent") == ["shop-bot/2"] * 3
    assert header_lines(network.api_wire, "x-tenant") == ["acme"] * 3


async def test_environment_proxy_sees_no_key_in_connect(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", network.proxy_url)
    async with AsyncWachat(
        KEY, base_url=network.https_base, default_headers=HEADERS, retry_policy=FAST_RETRY
    ) as wa:
        await calls(wa)
    assert_nothing_of_ours(network.connects)
    assert len(network.fake.requests) == 3


def test_sync_client_behind_a_proxy_sees_no_key_in_connect(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Wachat(
        KEY,
        base_url=network.https_base,
        proxy=network.proxy_url,
        default_headers=HEADERS,
        retry_policy=FAST_RETRY,
    ) as wa:
        wa.instances.create("shop")
        wa.instances.list()
    monkeypatch.setenv("HTTPS_PROXY", network.proxy_url)
    with Wachat(KEY, base_url=network.https_base, retry_policy=FAST_RETRY) as wa:
        wa.instances.list()
    assert len(network.connects) == 2
    assert_nothing_of_ours(network.connects)
    assert len(network.fake.requests) == 3


async def test_http_target_through_a_proxy_carries_the_key_only_as_authorization(
    network: Network,
) -> None:
    async with AsyncWachat(
        KEY,
        base_url=network.fake.base_url,
        proxy=network.proxy_url,
        default_headers=HEADERS,
        retry_policy=FAST_RETRY,
    ) as wa:
        await calls(wa)
    wire = network.plain.decode("latin-1")
    assert not network.connects
    assert wire.count("GET http://") + wire.count("POST http://") == 3  # absolute-form
    assert "proxy-authorization" not in wire.lower()
    assert wire.count(KEY) == 3
    assert header_lines(network.plain, "authorization") == [f"Bearer {KEY}"] * 3
    assert header_lines(network.plain, "user-agent") == ["shop-bot/2"] * 3
    assert len(network.fake.requests) == 3


# -- a tunnel that fails to open means nothing was sent -----------------------------------------


@collects_aiohttp_leak
@pytest.mark.parametrize("mode", ["close", "refuse"])
async def test_a_tunnel_that_never_opens_is_not_sent(network: Network, mode: Mode) -> None:
    network.mode = mode
    async with AsyncWachat(
        KEY, base_url=network.https_base, proxy=network.proxy_url, retry_policy=FAST_RETRY
    ) as wa:
        with pytest.raises(APIConnectionError) as create:
            await wa.instances.create("shop")
        with pytest.raises(APIConnectionError) as send:
            await wa.messages.send_text("t1_x_shop", "628123456789", "hi")
    for caught in (create, send):
        assert caught.value.failure is FailureClass.NOT_SENT
        assert caught.value.attempts == 3  # resent: it never left, whatever the operation
        assert KEY not in str(caught.value)
    assert len(network.connects) == 6
    assert not network.fake.requests
    gc.collect()


async def test_a_proxy_that_never_answers_the_connect_is_not_sent(network: Network) -> None:
    network.mode = "hang"
    async with AsyncWachat(
        KEY,
        base_url=network.https_base,
        proxy=network.proxy_url,
        retry_policy=attrs.evolve(FAST_RETRY, max_retries=0),
        timeout=0.3,
    ) as wa:
        with pytest.raises(APIConnectionError) as caught:
            await wa.instances.create("shop")
    assert caught.value.failure is FailureClass.NOT_SENT
    assert not network.fake.requests


@collects_aiohttp_leak
async def test_a_create_whose_tunnel_closed_once_is_resent_and_made_once(
    network: Network,
) -> None:
    network.mode = "close_once"
    async with AsyncWachat(
        KEY, base_url=network.https_base, proxy=network.proxy_url, retry_policy=FAST_RETRY
    ) as wa:
        created = await wa.instances.create("shop")
    assert not created.reconciled
    assert len(network.connects) == 2
    assert [r.path for r in network.fake.requests] == ["/instance/create"]
    assert list(network.fake.instances) == [created.instance.api_instance_name]
    gc.collect()
