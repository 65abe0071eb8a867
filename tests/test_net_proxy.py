"""Proxies from the environment, read as curl and requests read them (``NO_PROXY`` entries with
a port, scheme-less values, lowercase first), unsupported schemes refused as clearly as from
``proxy=``, and a proxy's credentials kept as secret as the API key: not in an error's text,
repr, args, fields or pickle, not in a log record, not in a validation message, whatever a
hostile proxy echoes in a 407 or a 502."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import pickle
import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.conftest import FAST_RETRY, KEY
from tests.edges import leaks
from wachat_async import (
    APIConnectionError,
    APIError,
    AsyncWachat,
    InvalidRequestError,
    Wachat,
    WachatError,
)
from wachat_async._config import Settings
from wachat_async._proxy import bypasses, proxy_for
from wachat_async.testing import FakeWachat

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")
#: An https API nobody serves: through a proxy only its CONNECT is ever seen.
REMOTE = "https://api.wachat.invalid/api/v1"
#: A plain-http API's name for tests through an http proxy: not loopback (an environment proxy
#: never carries a loopback http call), resolved by no one but the recording proxy, which
#: forwards it to the fake server.
HTTP_API_HOST = "api.wachat.test"


def http_api(fake: FakeWachat) -> str:
    """The fake's base URL under :data:`HTTP_API_HOST` (reachable through the proxy only)."""
    return fake.base_url.replace("127.0.0.1", HTTP_API_HOST, 1)


def http_client(fake: FakeWachat, **options: Any) -> AsyncWachat:
    return AsyncWachat(KEY, base_url=http_api(fake), allow_insecure_http=True, **options)


USER, PASSWORD = "proxy-operator-7", "Pr0xy/Pa55+w0rd=kept-secret"
#: The same credentials as they go in a URL (percent-encoded).
USERINFO = "proxy-operator-7:Pr0xy%2FPa55%2Bw0rd%3Dkept-secret"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

#: What a proxy writes back for a request it refuses, given that request's head.
Answer = Callable[[str, CIMultiDict[str]], bytes]


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def fake() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys={KEY}, qr_pool=2) as server:
        yield server


class RecordingProxy:
    """A loopback HTTP proxy that records each request's line and headers; it forwards
    absolute-form requests (plain http), and answers everything else (a CONNECT) with
    ``refuse``, or with ``refuse`` every request when ``refuse_all``."""

    def __init__(self, refuse: Answer | None = None, *, refuse_all: bool = False) -> None:
        self.seen: list[tuple[str, CIMultiDict[str]]] = []
        self.refuse = refuse or (lambda line, headers: _answer(502, "no tunnels here"))
        self.refuse_all = refuse_all
        self.url = ""
        self._session: aiohttp.ClientSession | None = None

    @property
    def lines(self) -> list[str]:
        return [line for line, _ in self.seen]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                line, *fields = head.removesuffix("\r\n\r\n").split("\r\n")
                headers: CIMultiDict[str] = CIMultiDict(
                    f.partition(": ")[::2] for f in fields if ": " in f
                )
                body = await reader.readexactly(int(headers.get("Content-Length", "0")))
                self.seen.append((line, headers))
                method, target, _ = line.split(" ", 2)
                if self.refuse_all or not target.startswith("http://"):
                    writer.write(self.refuse(line, headers))
                    await writer.drain()
                    return
                writer.write(await self._forward(method, target, headers, body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _forward(
        self, method: str, target: str, headers: CIMultiDict[str], body: bytes
    ) -> bytes:
        assert self._session is not None
        passed = {
            k: v
            for k, v in headers.items()
            if k.lower() not in ("host", "content-length", "proxy-authorization", "connection")
        }
        target = target.replace(f"http://{HTTP_API_HOST}:", "http://127.0.0.1:", 1)
        async with self._session.request(
            method, target, headers=passed, data=body or None, allow_redirects=False
        ) as upstream:
            payload = await upstream.read()
            kind = upstream.headers.get("Content-Type", "application/json")
            return _answer(upstream.status, payload, kind)


def _answer(
    status: int,
    body: bytes | str,
    kind: str = "text/plain",
    headers: dict[str, str] | None = None,
    reason: str = "Proxy Says",
) -> bytes:
    data = body.encode() if isinstance(body, str) else body
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n{extra}"
    return (head + f"Content-Length: {len(data)}\r\n\r\n").encode() + data


@contextlib.asynccontextmanager
async def recording_proxy(
    refuse: Answer | None = None, *, refuse_all: bool = False
) -> AsyncIterator[RecordingProxy]:
    proxy = RecordingProxy(refuse, refuse_all=refuse_all)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with aiohttp.ClientSession(trust_env=False) as session:
        proxy._session = session
        try:
            yield proxy
        finally:
            server.close()
            await server.wait_closed()


# -- which proxy --------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])
async def test_an_https_api_goes_through_the_https_or_all_proxy(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    async with recording_proxy() as proxy:
        monkeypatch.setenv(variable, proxy.url)
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # for http APIs only
        async with AsyncWachat(KEY, base_url=REMOTE, retry_policy=FAST_RETRY) as wa:
            with pytest.raises(APIConnectionError):
                await wa.instances.list()
    assert proxy.lines
    assert set(proxy.lines) == {"CONNECT api.wachat.invalid:443 HTTP/1.1"}


async def test_an_http_api_goes_through_http_proxy_lowercase_first(
    fake: FakeWachat, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with recording_proxy() as used, recording_proxy() as ignored:
        monkeypatch.setenv("http_proxy", used.url)
        monkeypatch.setenv("HTTP_PROXY", ignored.url)
        monkeypatch.setenv("HTTPS_PROXY", ignored.url)  # for https APIs only
        async with http_client(fake) as wa:
            await wa.instances.list()
            await wa.instances.create("shop")
    assert [line.split()[:2] for line in used.lines] == [
        ["GET", f"{http_api(fake)}/instance/list"],
        ["POST", f"{http_api(fake)}/instance/create"],
    ]
    assert not ignored.seen


async def test_a_scheme_less_proxy_variable_is_an_http_proxy(
    fake: FakeWachat, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with recording_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.removeprefix("http://"))
        async with http_client(fake) as wa:
            await wa.instances.list()
        monkeypatch.setenv("HTTP_PROXY", f"{USERINFO}@{proxy.url.removeprefix('http://')}")
        async with http_client(fake) as wa:
            await wa.instances.list()
    assert len(proxy.seen) == 2
    assert proxy.seen[1][1]["Proxy-Authorization"] == f"Basic {BASIC}"


def test_a_cgi_script_ignores_an_uppercase_http_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under CGI, ``HTTP_PROXY`` is the caller's ``Proxy:`` header (httpoxy)."""
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    monkeypatch.setenv("HTTP_PROXY", "http://attacker.example:3128")
    settings = Settings(
        KEY, base_url=f"http://{HTTP_API_HOST}:8080/api/v1", allow_insecure_http=True
    )
    assert proxy_for(settings) is None
    monkeypatch.setenv("http_proxy", "http://proxy.corp:3128")
    assert proxy_for(settings) == "http://proxy.corp:3128"


def test_an_empty_lowercase_variable_turns_the_uppercase_one_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As urllib and requests read them (``https_proxy= command`` runs without a proxy)."""
    settings = Settings(KEY, base_url=REMOTE)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    assert proxy_for(settings) == "http://proxy.corp:3128"
    monkeypatch.setenv("https_proxy", "")
    assert proxy_for(settings) is None
    monkeypatch.setenv("ALL_PROXY", "proxy.all:3128")
    assert proxy_for(settings) == "http://proxy.all:3128"
    monkeypatch.setenv("NO_PROXY", "api.wachat.invalid")
    assert proxy_for(settings) is None
    monkeypatch.setenv("no_proxy", "")
    assert proxy_for(settings) == "http://proxy.all:3128"


def test_a_base_url_refused_for_its_port_never_shows_its_credentials() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        Settings(KEY, base_url=f"https://{USERINFO}@api.example:99999/api/v1")
    assert "'https://***@api.example:99999/api/v1'" in str(caught.value)
    assert_no_credentials(caught.value)


# -- NO_PROXY -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "bypassed"),
    [
        ("127.0.0.1:{port}", True),
        ("127.0.0.1:{other}", False),
        ("localhost:{other}, 127.0.0.1:{port}", True),
        ("  127.0.0.1:{other} ,other.example", False),
        ("127.0.0.0/8", True),
        ("127.0.0.0/8:{port}", True),
        ("10.0.0.0/8", False),
        ("*", True),
        ("", False),
    ],
)
async def test_no_proxy_entries_with_a_port_are_honoured(
    monkeypatch: pytest.MonkeyPatch, entries: str, bypassed: bool
) -> None:
    """For an https API on loopback (a loopback http one never takes an environment proxy)."""
    port = 8443
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", entries.format(port=port, other=port + 1))
    settings = Settings(KEY, base_url=f"https://127.0.0.1:{port}/api/v1")
    assert (proxy_for(settings) is None) is bypassed


@pytest.mark.parametrize(
    ("entry", "bypassed"),
    [("127.0.0.1:443", True), ("127.0.0.1:80", False), ("127.0.0.1", True)],
)
async def test_no_proxy_compares_the_default_port_of_an_https_api(
    monkeypatch: pytest.MonkeyPatch, entry: str, bypassed: bool
) -> None:
    """``https://127.0.0.1/...`` is port 443: the entry ``127.0.0.1:443`` exempts it."""
    async with recording_proxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", entry)
        settings = Settings(KEY, base_url="https://127.0.0.1/api/v1")
        assert (proxy_for(settings) is None) is bypassed


@pytest.mark.parametrize(
    ("entries", "host", "port", "bypassed"),
    [
        ("api.example.com:443", "api.example.com", 443, True),
        ("api.example.com:443", "api.example.com", 8443, False),
        ("API.Example.com", "api.example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        (".example.com", "api.example.com", 443, True),
        ("*.example.com", "api.example.com", 443, True),
        (".example.com:443", "api.example.com", 443, True),
        ("example.com", "badexample.com", 443, False),
        ("ample.com", "example.com", 443, False),
        ("example.com.", "api.example.com", 443, True),
        ("10.1.2.3", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8:443", "10.1.2.3", 80, False),
        ("10.0.0.0/8", "api.example.com", 443, False),
        ("::1", "::1", 443, True),
        ("[::1]:443", "::1", 443, True),
        ("[::1]:80", "::1", 443, False),
        ("fd00::/8", "fd12::1", 443, True),
        ("other.example,api.example.com:443", "api.example.com", 443, True),
        ("*", "anything.example", 1, True),
        ("", "api.example.com", 443, False),
    ],
)
def test_no_proxy_matching(entries: str, host: str, port: int, bypassed: bool) -> None:
    assert bypasses(entries, host, port) is bypassed


# -- unsupported schemes ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "socks4", "socks4a", "ftp"])
@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
@pytest.mark.parametrize("client", [AsyncWachat, Wachat])
def test_an_unsupported_proxy_in_the_environment_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    client: type[AsyncWachat] | type[Wachat],
    variable: str,
    scheme: str,
) -> None:
    monkeypatch.setenv(variable, f"{scheme}://{USERINFO}@127.0.0.1:1080")
    with pytest.raises(InvalidRequestError) as caught:
        client(KEY, base_url=REMOTE)
    message = str(caught.value)
    assert variable in message
    assert f"{scheme}://***@127.0.0.1:1080" in message
    assert "only http:// and https:// proxies are supported" in message
    assert_no_credentials(caught.value)


@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "socks4"])
def test_an_unsupported_proxy_argument_is_refused_without_its_credentials(scheme: str) -> None:
    for userinfo in (USERINFO, "user:pw"):
        with pytest.raises(InvalidRequestError) as caught:
            AsyncWachat(KEY, base_url=REMOTE, proxy=f"{scheme}://{userinfo}@h:1080")
        assert str(caught.value).startswith("proxy must be an http(s) proxy URL")
        assert f"{scheme}://***@h:1080" in str(caught.value)
        assert_no_credentials(caught.value, userinfo)


def test_an_unsupported_proxy_that_is_not_used_is_not_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    AsyncWachat(KEY, base_url=REMOTE, trust_env=False)
    AsyncWachat(KEY, base_url=REMOTE, proxy="http://127.0.0.1:3128")
    AsyncWachat(KEY, base_url="http://127.0.0.1:8080/api/v1")  # an http API: HTTP_PROXY's
    monkeypatch.setenv("NO_PROXY", "api.wachat.invalid:443")
    AsyncWachat(KEY, base_url=REMOTE)


@pytest.mark.parametrize(
    "value",
    [
        f"http://{USERINFO}@127.0.0.1:99999",
        f"http://{USERINFO}@pro xy:3128",
        f"http://{USER}:{PASSWORD}@proxy:3128",  # unescaped / and =: malformed, still hidden
        f"{USER}:{PASSWORD}@:3128",
    ],
)
def test_a_malformed_proxy_never_shows_its_credentials(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", value)
    with pytest.raises(InvalidRequestError) as caught:
        AsyncWachat(KEY, base_url=REMOTE)
    assert "HTTPS_PROXY" in str(caught.value)
    assert_no_credentials(caught.value)
    with pytest.raises(InvalidRequestError) as caught:
        AsyncWachat(KEY, base_url=REMOTE, proxy=value)
    assert_no_credentials(caught.value)


# -- credentials are secrets ---------------------------------------------------------------------


def credential_spellings(userinfo: str = USERINFO) -> list[str]:
    user, _, password = userinfo.partition(":")
    plain = f"{unquote(user)}:{unquote(password)}"
    encoded = base64.b64encode(plain.encode()).decode()
    return [userinfo, plain, unquote(user), unquote(password), encoded]


def assert_no_credentials(error: BaseException, userinfo: str = USERINFO) -> None:
    """Nothing of the credentials in ``error``: long ones not even in part (the detector of
    the key's pieces), short ones not standing alone."""
    texts = [str(error), repr(error), repr(error.args), repr(vars(error))]
    texts += [repr(pickle.loads(pickle.dumps(error)).__dict__)]
    for secret in credential_spellings(userinfo):
        if len(secret) >= 8:
            assert not leaks(error, secret), secret
        for text in texts:
            assert not re.search(rf"(?<![^\W_]){re.escape(secret)}(?![^\W_])", text), (
                secret,
                text,
            )


def echo_credentials(status: int) -> Answer:
    """A hostile proxy: refuses with ``status``, quoting what it was sent (its
    ``Proxy-Authorization``, decoded too) in its body and headers."""

    def answer(line: str, headers: CIMultiDict[str]) -> bytes:
        sent = headers.get("Proxy-Authorization", "")
        decoded = base64.b64decode(sent.removeprefix("Basic ")).decode() if sent else ""
        body = (
            f'{{"error": "denied for {decoded}", "got": "{sent}", '
            f'"lower": "{decoded.lower()}", "url": "http://{USERINFO}@proxy/"}}'
        )
        return _answer(
            status,
            body,
            "application/json",
            {
                "Proxy-Authenticate": f'Basic realm="{decoded}"',
                "X-Seen": sent,
                "Set-Cookie": f"u={decoded.upper()}",
            },
            reason=f"Denied {decoded} {sent}",  # aiohttp quotes the reason in its error
        )

    return answer


@pytest.mark.parametrize("status", [407, 502])
async def test_a_proxy_refusing_a_tunnel_never_shows_its_credentials(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    caplog.set_level(logging.DEBUG)
    async with recording_proxy(echo_credentials(status)) as proxy:
        for configured in ("environment", "argument"):
            url = f"http://{USERINFO}@{proxy.url.removeprefix('http://')}"
            options: dict[str, Any] = {"base_url": REMOTE, "retry_policy": FAST_RETRY}
            if configured == "environment":
                monkeypatch.setenv("HTTPS_PROXY", url)
            else:
                monkeypatch.delenv("HTTPS_PROXY")
                options["proxy"] = url
            caplog.clear()
            async with AsyncWachat(KEY, **options) as wa:
                with pytest.raises(WachatError) as caught:
                    await wa.instances.create("shop")
            assert isinstance(caught.value, APIConnectionError), caught.value
            assert f"{status}, message='Denied *** Basic ***'" in str(caught.value)
            assert_no_credentials(caught.value)
            assert_clean_logs(caplog.records)
    assert all(h.get("Proxy-Authorization") == f"Basic {BASIC}" for _, h in proxy.seen)


@pytest.mark.parametrize("status", [407, 502])
async def test_a_proxy_answering_for_the_api_never_shows_its_credentials(
    fake: FakeWachat,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    """Plain http through the proxy: its 407 or 502 is the answer the client reads (quoted,
    headers and all, in an APIError), retried and logged at DEBUG."""
    caplog.set_level(logging.DEBUG)
    async with recording_proxy(echo_credentials(status), refuse_all=True) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://{USERINFO}@{proxy.url.removeprefix('http://')}")
        async with http_client(fake, retry_policy=FAST_RETRY) as wa:
            with pytest.raises(APIError) as caught:
                await wa.instances.list()
            assert repr(wa) == f"AsyncWachat(base_url={http_api(fake)!r}, api_key='***')"
            assert_no_text_of_credentials(repr(wa.settings))
    error = caught.value
    assert error.status_code == status
    assert "X-Seen" in error.headers
    assert "Proxy-Authenticate" in error.headers
    assert_no_credentials(error)
    assert_clean_logs(caplog.records)
    if status == 502:
        assert error.attempts == 3  # retried (a read), each failure logged
        assert any("retrying" in r.getMessage() for r in caplog.records)


def test_settings_and_clients_show_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = f"http://{USERINFO}@127.0.0.1:3128"
    settings = Settings(KEY, base_url=REMOTE, proxy=proxy)
    assert_no_text_of_credentials(repr(settings))
    with Wachat(KEY, base_url=REMOTE, proxy=proxy) as wa:
        assert_no_text_of_credentials(repr(wa))
        assert_no_text_of_credentials(repr(wa.settings))
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    assert_no_text_of_credentials(repr(AsyncWachat(KEY, base_url=REMOTE)))


def assert_no_text_of_credentials(text: str) -> None:
    for secret in credential_spellings():
        assert secret not in text
    assert USER not in text
    assert PASSWORD not in text


def assert_clean_logs(records: list[logging.LogRecord]) -> None:
    for record in records:
        assert_no_text_of_credentials(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            assert_no_credentials(record.exc_info[1])


async def test_short_credentials_are_removed_where_they_stand(
    fake: FakeWachat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``u:pw`` is hidden where the proxy quotes it, and ordinary words keep their letters."""

    def answer(line: str, headers: CIMultiDict[str]) -> bytes:
        return _answer(407, "Proxy authentication required: user u password pw (u:pw)")

    async with recording_proxy(answer, refuse_all=True) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://u:pw@{proxy.url.removeprefix('http://')}")
        async with http_client(fake, retry_policy=FAST_RETRY) as wa:
            with pytest.raises(APIError) as caught:
                await wa.instances.list()
    assert caught.value.message == "Proxy authentication required: user *** password *** (***)"
