"""The API key never leaks, whatever a hostile server echoes and however it spells it: not in an
error's text, args, fields or cause chain, not in its pickle, not in log records (retries
included), not in a provisioning journal on disk."""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import pytest
from aiohttp import web

from tests.edges import (
    KEY,
    KEYS,
    Front,
    echoes,
    json_answer,
    leaks,
    raw_server,
    raw_server_in_thread,
    read_request,
    secret_in,
)
from wachat_async import (
    AsyncWachat,
    CreateSpec,
    ResponseValidationError,
    RetryPolicy,
    Wachat,
    WachatError,
)
from wachat_async.testing import FakeWachat

FAST = RetryPolicy(initial_backoff=0.01, max_backoff=0.02)
ECHOES = sorted(echoes(KEY))
#: The spellings that may appear in a header value (no line breaks).
HEADER_ECHOES = [e for e in ECHOES if e not in ("lines", "crlf")]


@pytest.fixture
async def fake() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys=set(KEYS), qr_pool=2) as server:
        yield server


def client(base_url: str, key: str = KEY, **options: Any) -> AsyncWachat:
    settings: dict[str, Any] = {
        "base_url": base_url,
        "retry_policy": FAST,
        "timeout": 2.0,
        "settle_delay": 0.05,
    }
    settings.update(options)
    return AsyncWachat(key, **settings)


def clean(
    error: BaseException, records: list[logging.LogRecord], key: str = KEY, context: str = ""
) -> None:
    found = leaks(error, key)
    for record in records:
        piece = secret_in(record.getMessage(), key)
        if piece is not None:
            found.append(f"log record {record.name}: {piece!r}")
        if record.exc_info and record.exc_info[1] is not None:
            found += leaks(record.exc_info[1], key)
    assert not found, (context, found)


async def failure_of(work: Awaitable[Any]) -> WachatError:
    with pytest.raises(WachatError) as caught:
        await work
    return caught.value


def test_the_detector_sees_every_spelling_and_piece() -> None:
    """The checks below are only as good as :func:`leaks`: it must see what a server echoes."""
    for key in KEYS:
        for echo, text in echoes(key).items():
            assert secret_in(f"...{text}...", key) is not None, echo
            assert leaks(ValueError(f"<{text}>"), key), echo
        assert secret_in(key[11:19], key) is not None
        assert secret_in(key[11:18], key) is None  # 7 characters: not a piece
        assert not leaks(ValueError("nothing to see"), key)


Answer = Callable[[str], web.StreamResponse]

#: An error or undecodable answer quoting ``echo`` somewhere.
ANSWERS: dict[str, Answer] = {
    "400_json_error": lambda e: json_answer(400, {"success": False, "error": f"bad key {e}"}),
    "401_details": lambda e: json_answer(401, {"details": {"key": e, "hint": [e]}}),
    "404_text": lambda e: web.Response(status=404, text=f"Not found for {e}"),
    "429_message": lambda e: json_answer(
        429, {"message": e}, headers={"Retry-After": "0.01", "X-Echo": e.replace("\n", " ")}
    ),
    "500_html": lambda e: web.Response(
        status=500, text=f"<pre>Authorization: Bearer {e}</pre>", content_type="text/html"
    ),
    "200_not_json": lambda e: web.Response(status=200, text=f"key={e}", content_type="text/plain"),
    "200_bad_json": lambda e: web.Response(
        status=200, text='{"instances": "' + e, content_type="application/json"
    ),
    "200_wrong_shape": lambda e: json_answer(200, {"success": True, "instances": e}),
    "200_bad_item": lambda e: json_answer(200, {"instances": [{"apiInstanceName": 5, "id": e}]}),
    "200_binary": lambda e: web.Response(
        status=200, body=e.encode(), content_type="application/octet-stream"
    ),
}


async def each_spelling(
    fake: FakeWachat,
    caplog: pytest.LogCaptureFixture,
    answer: Answer,
    call: Callable[[AsyncWachat], Awaitable[Any]],
    spellings: Iterable[str] = ECHOES,
    key: str = KEY,
) -> list[WachatError]:
    """The error of ``call`` while the server answers ``answer(spelling)``, for each spelling
    of ``key``, each checked clean (with the log records of its call)."""
    caplog.set_level(logging.DEBUG)
    spelling = {"text": ""}

    async def script(request: web.Request, body: bytes) -> web.StreamResponse:
        return answer(spelling["text"])

    found = []
    async with Front(fake, script) as api, client(api.base_url, key=key) as wa:
        for echo in spellings:
            spelling["text"] = echoes(key)[echo]
            caplog.clear()
            error = await failure_of(call(wa))
            clean(error, caplog.records, key, context=echo)
            found.append(error)
    return found


@pytest.mark.parametrize("answer", sorted(ANSWERS))
async def test_echoed_key_never_leaks(
    fake: FakeWachat, caplog: pytest.LogCaptureFixture, answer: str
) -> None:
    await each_spelling(fake, caplog, ANSWERS[answer], lambda wa: wa.instances.list())


@pytest.mark.parametrize("key", KEYS)
async def test_key_in_header_names_and_values_never_leaks(
    fake: FakeWachat, caplog: pytest.LogCaptureFixture, key: str
) -> None:
    token = "".join(c for c in key if c.isalnum())  # what a header name can hold

    def answer(text: str) -> web.StreamResponse:
        headers = {
            f"X-{token}": "1",
            "X-Echo": text,
            "WWW-Authenticate": f'Bearer realm="{text}"',
            "Set-Cookie": f"k={text}",
        }
        return json_answer(403, {"error": "no"}, headers=headers)

    errors = await each_spelling(
        fake, caplog, answer, lambda wa: wa.instances.state("t1_x_shop"), HEADER_ECHOES, key
    )
    assert all("X-Echo" in getattr(error, "headers", {}) for error in errors)


async def test_key_as_a_json_member_name_never_leaks(
    fake: FakeWachat, caplog: pytest.LogCaptureFixture
) -> None:
    """The QR answer is searched under any member name; the failing field's path names them."""

    def answer(text: str) -> web.StreamResponse:
        return json_answer(200, {text: {"qrcode": {"base64": 12, "code": [text]}}})

    for error in await each_spelling(fake, caplog, answer, lambda wa: wa.instances.qr("t1_x")):
        assert isinstance(error, ResponseValidationError)
        assert error.field is not None
        assert ".qrcode." in error.field


async def test_key_in_content_type_never_leaks(
    fake: FakeWachat, caplog: pytest.LogCaptureFixture
) -> None:
    def answer(text: str) -> web.StreamResponse:
        return web.Response(status=200, body=b"\x89PNG", headers={"Content-Type": f"image/{text}"})

    spellings = ("verbatim", "cut40", "url_upper", "base64")
    await each_spelling(fake, caplog, answer, lambda wa: wa.instances.qr_image("t1_x"), spellings)


# -- failures inside aiohttp: its exceptions carry request_info (with the Authorization header)


#: What a broken server writes after reading the request (None: hangs up without a word).
RAW_FAILURES: dict[str, bytes | None] = {
    "hang_up": None,
    "garbage_status": f"HTTP/1.1 2OO {KEY}\r\n\r\n".encode(),
    "not_http": f"Bearer {KEY}\r\n{KEY}\r\n\r\n".encode(),
    "too_many_headers": (
        "HTTP/1.1 200 OK\r\n"
        + "".join(f"X-H{i}: {KEY}\r\n" for i in range(300))
        + "Content-Length: 2\r\n\r\n{}"
    ).encode(),
    "long_header": (
        f"HTTP/1.1 200 OK\r\nX-Key: {KEY * 400}\r\nContent-Length: 2\r\n\r\n{{}}"
    ).encode(),
    "bad_chunks": (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        f"zz{KEY}\r\n{KEY}\r\n"
    ).encode(),
    "cut_body": (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
        f'{{"key": "{KEY}'
    ).encode(),
    "bad_header_line": f"HTTP/1.1 200 OK\r\n{KEY}\r\nContent-Length: 2\r\n\r\n{{}}".encode(),
}


@pytest.mark.parametrize("failure", sorted(RAW_FAILURES))
async def test_aiohttp_failures_never_leak(caplog: pytest.LogCaptureFixture, failure: str) -> None:
    caplog.set_level(logging.DEBUG)
    answer = RAW_FAILURES[failure]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if answer is not None:
            writer.write(answer)
            await writer.drain()

    async with raw_server(handle) as base_url, client(base_url) as wa:
        for call in (wa.instances.list(), wa.instances.create("shop")):
            caplog.clear()
            error = await failure_of(call)
            assert error.__cause__ is None or isinstance(error.__cause__, WachatError)
            clean(error, caplog.records)


@pytest.mark.parametrize(
    "answer",
    [
        f"HTTP/1.1 2OO {KEY}\r\n\r\n",
        f"HTTP/1.1 401 Unauthorized\r\nContent-Length: {len(KEY)}\r\n\r\n{KEY}",
        f"HTTP/1.1 302 Found\r\nLocation: https://evil.example/{KEY}\r\n\r\n",
    ],
)
def test_sync_facade_errors_never_leak(caplog: pytest.LogCaptureFixture, answer: str) -> None:
    caplog.set_level(logging.DEBUG)
    with (
        raw_server_in_thread(answer.encode()) as base_url,
        Wachat(KEY, base_url=base_url, retry_policy=FAST) as wa,
        pytest.raises(WachatError) as caught,
    ):
        wa.instances.list()
    clean(caught.value, caplog.records)


# -- the journal on disk --------------------------------------------------------------------


@pytest.mark.parametrize("echo", ["verbatim", "json_slash", "url_lower", "base64", "lines"])
async def test_journal_never_holds_the_key(
    fake: FakeWachat, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, echo: str
) -> None:
    caplog.set_level(logging.DEBUG)
    text = echoes(KEY)[echo]
    turn = 0

    async def script(request: web.Request, body: bytes) -> web.StreamResponse | None:
        nonlocal turn
        if request.path != "/api/v1/instance/create":
            return None
        turn += 1
        kind = turn % 4
        if kind == 0:
            return None  # created for real
        if kind == 1:
            return json_answer(400, {"error": text})
        if kind == 2:
            await api.forward(request, body)  # created, but the answer cannot be read
            return web.Response(status=201, text=text, content_type="application/json")
        return web.Response(status=502, text=text)

    def on_disk() -> list[str]:
        """Pieces of the key in the journal's files (its -wal too, while it is open)."""
        found = []
        for file in tmp_path.iterdir():
            piece = secret_in(file.read_bytes(), KEY)
            if piece is not None:
                found.append(f"{file.name}: {piece!r}")
        return found

    path = tmp_path / "journal.db"
    results = []
    async with Front(fake, script) as api, client(api.base_url, max_retries=1) as wa:
        async for result in wa.instances.create_many(
            [CreateSpec(f"shop_{i}", number=f"62812345678{i}") for i in range(8)],
            journal=path,
            concurrency=2,
        ):
            results.append(result)
            assert (tmp_path / "journal.db-wal").exists()
            assert not on_disk()
    assert any(r.error is not None for r in results)
    assert any(r.ok for r in results)
    for result in results:
        if result.error is not None:
            clean(result.error, [])
    assert not on_disk()
    clean(ValueError("no error"), caplog.records)
