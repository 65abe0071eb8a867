"""Hostile servers and leak detectors for the adversarial suites (``test_edges_*.py``).

- :class:`Front`: a loopback server in front of a :class:`FakeWachat` that forwards every
  request unless a script answers it first (with a redirect, an echo of the key, a huge body...),
  and counts what reached it.
- :func:`raw_server`: a loopback TCP server whose handler writes raw bytes (malformed HTTP).
- :func:`leaks`: every place an API key (or any 8+ character piece of it, in any spelling a
  server may echo it in) shows up in an exception: its text, fields, chain, and pickle.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import pickle
import re
import socketserver
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import aiohttp
from aiohttp import web

from wachat_async.testing import FakeWachat

#: Realistic keys, 40+ characters, with the characters URL and JSON encodings change.
KEYS = (
    "wk_live_9fQ/2+Lm=Xa7Tq/Bc+De3Fg4Hi5Jk6Lm7No8Pq9Rs0Tu1Vw2Xy3Z==",
    "sk+/Zr8uQeYw3/Lp+Tn5=Vb7Mc9Kd1/Hf3Jg5+Ns7Qa9We1Rt3Yu5Io7==",
)
KEY = KEYS[0]
#: The shortest piece of a key that must never show.
PIECE = 8

Script = Callable[[web.Request, bytes], Awaitable[web.StreamResponse | None]]


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def _b64_aligned(key: str) -> list[str]:
    """The key's base64 at each of the three byte alignments, without the edge characters
    that depend on what surrounds it (``Basic base64("user:" + key)`` shifts it)."""
    raw = key.encode()
    forms = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = (offset * 4 + 2) // 3 + 1
        forms.append(encoded[start : len(encoded) - 4])
    return forms


def spellings(key: str) -> list[str]:
    """Every spelling of ``key`` the detector looks for (8+ character pieces of each)."""
    escaped = "".join(c if c.isalnum() else f"\\u{ord(c):04x}" for c in key)
    forms = {
        key,
        key.replace("/", "\\/"),
        escaped,
        quote(key, safe=""),
        _lower_hex(quote(key, safe="")),
        quote_plus(key, safe=""),
        *_b64_aligned(key),
        base64.urlsafe_b64encode(key.encode()).decode().rstrip("="),
    }
    return sorted(forms)


@functools.cache
def _pieces(key: str) -> frozenset[str]:
    found: set[str] = set()
    for form in spellings(key):
        found |= {form[i : i + PIECE] for i in range(len(form) - PIECE + 1)}
    return frozenset(found)


@functools.cache
def _pieces_pattern(key: str) -> tuple[re.Pattern[str], re.Pattern[bytes]]:
    alternatives = "|".join(re.escape(p) for p in sorted(_pieces(key)))
    return re.compile(alternatives), re.compile(alternatives.encode())


def _views(text: str) -> Iterator[str]:
    """``text``, then it read through JSON and URL escapes, up to three times over (a key
    escaped character by character, in any mix, does not show in ``text`` itself)."""
    yield text
    for _ in range(3):
        if "\\" not in text and "%" not in text:
            return
        text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
        text = re.sub(r"\\(.)", r"\1", text)
        text = unquote(text)
        yield text


def secret_in(text: str | bytes, key: str) -> str | None:
    """The first piece of ``key`` found in ``text`` (or in it unescaped), or None."""
    as_text, as_bytes = _pieces_pattern(key)
    if isinstance(text, bytes):
        found = as_bytes.search(text)
        if found is not None:
            return found.group().decode()
        text = text.decode("utf-8", "replace")
    for view in _views(text):
        match = as_text.search(view)
        if match is not None:
            return match.group()
    return None


def _attributes(obj: Any) -> Iterable[tuple[str, Any]]:
    if hasattr(obj, "__dict__"):
        yield from vars(obj).items()
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if isinstance(name, str) and hasattr(obj, name):
                yield name, getattr(obj, name)


def leaks(exc: BaseException, key: str) -> list[str]:
    """Where ``key`` shows in ``exc``: text, args, fields (walked), the cause/context chain
    (with aiohttp's ``request_info``), and its pickle. Empty when it is clean."""
    found: list[str] = []
    seen: set[int] = set()

    def check(where: str, text: str | bytes) -> None:
        piece = secret_in(text, key)
        if piece is not None:
            found.append(f"{where}: {piece!r}")

    def walk(obj: Any, where: str, depth: int) -> None:
        if depth > 10 or id(obj) in seen:
            return
        if isinstance(obj, str | bytes):
            check(where, obj)
            return
        if obj is None or isinstance(obj, int | float | bool):
            return
        seen.add(id(obj))
        if isinstance(obj, BaseException):
            check(f"{where} str", str(obj))
            check(f"{where} repr", repr(obj))
            walk(obj.args, f"{where}.args", depth + 1)
            walk(obj.__cause__, f"{where}.__cause__", depth + 1)
            walk(obj.__context__, f"{where}.__context__", depth + 1)
            info = getattr(obj, "request_info", None)
            if info is not None:
                walk(info, f"{where}.request_info", depth + 1)
        if isinstance(obj, Mapping) or (hasattr(obj, "items") and callable(obj.items)):
            with contextlib.suppress(Exception):
                for k, v in obj.items():
                    walk(k, f"{where} key", depth + 1)
                    walk(v, f"{where}[{k!r}]", depth + 1)
        elif isinstance(obj, list | tuple | set | frozenset):
            for i, item in enumerate(obj):
                walk(item, f"{where}[{i}]", depth + 1)
        else:
            with contextlib.suppress(Exception):
                check(f"{where} repr", repr(obj))
        for name, value in _attributes(obj):
            walk(value, f"{where}.{name}", depth + 1)

    walk(exc, type(exc).__name__, 0)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        check(f"pickle protocol {protocol}", pickle.dumps(exc, protocol=protocol))
    return found


def echoes(key: str) -> dict[str, str]:
    """A hostile server's ways of quoting ``key``."""
    escaped = "".join(c if c.isalnum() else f"\\u{ord(c):04x}" for c in key)
    all_escaped = "".join(f"\\u{ord(c):04X}" if i % 2 else c for i, c in enumerate(key))
    return {
        "verbatim": key,
        "json_slash": key.replace("/", "\\/"),
        "json_unicode": escaped,
        "json_unicode_mixed": all_escaped,
        "url_upper": quote(key, safe=""),
        "url_lower": _lower_hex(quote(key, safe="")),
        "url_plus": quote_plus(f"Bearer {key}", safe=""),
        "base64": base64.b64encode(key.encode()).decode(),
        "base64_basic": base64.b64encode(f"user:{key}".encode()).decode(),
        "base64_bearer": base64.b64encode(f"Bearer {key}".encode()).decode(),
        "cut40": key[:40],
        "tail": key[-20:],
        "lines": "\n".join(key[i : i + 12] for i in range(0, len(key), 12)),
        "crlf": key[:25] + "\r\n  " + key[25:],
    }


class Front:
    """A server in front of ``fake``: ``script(request, body)`` may answer a request itself;
    otherwise it is forwarded. ``hits`` counts requests by ``METHOD path`` (API prefix cut)."""

    def __init__(self, fake: FakeWachat, script: Script | None = None) -> None:
        self.fake = fake
        self.script = script
        self.hits: Counter[str] = Counter()
        self.headers: list[Mapping[str, str]] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.root = ""

    @property
    def base_url(self) -> str:
        return self.root + "/api/v1"

    async def __aenter__(self) -> Front:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.root = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.hits[f"{request.method} {request.path.removeprefix('/api/v1')}"] += 1
        self.headers.append(dict(request.headers))
        if self.script is not None:
            answer = await self.script(request, body)
            if answer is not None:
                return answer
        return await self.forward(request, body)

    async def forward(self, request: web.Request, body: bytes) -> web.Response:
        assert self._session is not None
        root = self.fake.base_url.removesuffix("/api/v1")
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with self._session.request(
            request.method,
            root + request.rel_url.raw_path_qs,
            data=body or None,
            headers=headers,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            kept = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() in ("content-type", "date", "x-instance-name", "x-api-instance-name")
            }
            return web.Response(status=upstream.status, body=payload, headers=kept)


@contextlib.asynccontextmanager
async def raw_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A loopback TCP server running ``handle`` per connection; yields its ``/api/v1`` URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # (a cancelled connection task would be logged by asyncio's server)
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@contextlib.contextmanager
def raw_server_in_thread(answer: bytes) -> Iterator[str]:
    """A loopback TCP server in a thread that reads one request per connection and writes
    ``answer``; yields its ``/api/v1`` URL (for the synchronous client)."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            length = 0
            while line := self.rfile.readline():
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            self.rfile.read(length)
            self.wfile.write(answer)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/api/v1"
        finally:
            server.shutdown()
            thread.join(timeout=10)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """The head and body of one HTTP/1.1 request (Content-Length bodies only)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + (await reader.readexactly(length) if length else b"")


def json_answer(status: int, data: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data).encode(),
        content_type="application/json",
        headers=headers,
    )
