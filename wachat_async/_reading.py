"""Reading an answer within bounds: at most a size cap (counted while reading, so memory
never holds more), compressed bodies inflated as they arrive with the inflated size counted
(a small gzip can inflate to gigabytes), and the answer handed back as a :class:`RawResponse`
whatever its status."""

from __future__ import annotations

import zlib
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

#: What is read of an answer that announces more than its cap: enough to quote in an error.
_PREFIX_OF_OVERSIZED = 8192
#: The most read of an error answer (3xx, 4xx, 5xx): only its start is ever quoted.
_ERROR_BODY_BYTES = 65536
_CHUNK = 65536
#: Content codings the client decodes itself (bounded, see _Inflater); anything else is
#: reported as unreadable rather than handed to a decoder as if it were plain.
_INFLATABLE = frozenset({"gzip", "x-gzip", "deflate"})
#: gzip members in one body: a real answer has one; a bomb may have thousands.
_MAX_MEMBERS = 64


_MEDIA_TYPES: dict[str, str] = {}


def media_type(header: str) -> str:
    """``application/json`` from ``Application/JSON; charset=utf-8``; remembered, since a server
    sends the same few values again and again."""
    known = _MEDIA_TYPES.get(header)
    if known is None:
        known = header.split(";", 1)[0].strip().lower()
        if len(_MEDIA_TYPES) < 256:
            _MEDIA_TYPES[header] = known
    return known


class RawResponse:
    """An answer as it arrived: status, headers and (at most a cap of) the body, decoded from
    its content coding."""

    __slots__ = (
        "body",
        "cap",
        "headers",
        "readable",
        "resent",
        "status",
        "unreadable",
    )

    def __init__(
        self,
        status: int,
        headers: CIMultiDictProxy[str],
        body: bytes,
        *,
        complete: bool = True,
        resent: bool = False,
        cap: tuple[str, int] | None = None,
        unreadable: str | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        #: True when aiohttp (3.10) silently resent the request after losing the first answer.
        self.resent = resent
        #: The option and size of the cap that stopped the reading (``("max_image_bytes",
        #: 10485760)``), when it did.
        self.cap = cap
        #: Why the body could not be read although it was not too large (an unknown or corrupt
        #: content coding); None when it is fine.
        self.unreadable = unreadable
        #: The whole body arrived and can be decoded (a plain attribute: read on every call).
        self.readable = complete and unreadable is None

    @property
    def content_type(self) -> str:
        """The media type, lowercase, without parameters (``application/json``)."""
        return media_type(self.headers.get("Content-Type", ""))

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


async def read_bounded(
    resp: aiohttp.ClientResponse, max_response_bytes: int, max_image_bytes: int, inflates: bool
) -> RawResponse:
    """The body of an answer that is large, compressed, or of unannounced length: read up
    to its cap (images have their own), counting as it arrives, and inflated as it arrives
    when compressed (the inflated size counts: a small gzip can inflate to gigabytes)."""
    if media_type(resp.headers.get("Content-Type", "")).startswith("image/"):
        cap = ("max_image_bytes", max_image_bytes)
    else:
        cap = ("max_response_bytes", max_response_bytes)
    limit = cap[1]
    if not 200 <= resp.status < 300:
        limit = min(limit, _ERROR_BODY_BYTES)  # an error's body is only ever quoted
    coding = resp.headers.get("Content-Encoding", "").strip().lower()
    inflater: _Inflater | None = None
    unreadable: str | None = None
    if coding in _INFLATABLE and inflates:
        inflater = _Inflater(coding)
    elif coding not in ("", "identity") and inflates:
        unreadable = f"the answer is compressed as {coding!r}, which the client does not decode"
    length = resp.content_length
    if inflater is None and length is not None and length > limit:
        limit = min(limit, _PREFIX_OF_OVERSIZED)  # it said so: read only enough to quote
        body, _ = await _read_at_most(resp, limit, None)
        complete = False
    else:
        try:
            body, complete = await _read_at_most(resp, limit, inflater)
        except zlib.error:
            body, complete = b"", True
            unreadable = f"the answer's {coding} compression is corrupt"
    if not complete or unreadable:
        resp.close()  # the rest is never read: the connection cannot be reused
    return RawResponse(
        resp.status,
        resp.headers,
        body,
        complete=complete,
        cap=None if complete else cap,
        unreadable=unreadable,
    )


class _Inflater:
    """Inflates a gzip or deflate body as it arrives, never producing more than asked for, so
    a bomb is stopped at the cap instead of being inflated first and measured after."""

    def __init__(self, coding: str) -> None:
        self._gzip = coding != "deflate"
        self._members = 1
        self._inflate: Any = zlib.decompressobj(31) if self._gzip else None

    def feed(self, data: bytes, limit: int) -> bytes:
        """At most ``limit`` (> 0) bytes inflated from ``data`` (and what it left over)."""
        if self._inflate is None:
            # "deflate" is meant to be zlib-wrapped; some servers send it raw.
            self._inflate = zlib.decompressobj(15 if data[:1] and data[0] & 0x0F == 8 else -15)
        out = self._inflate.decompress(data, limit)
        # Concatenated gzip members are one body; each continues in a fresh inflater.
        while self._gzip and self._inflate.eof and self._inflate.unused_data and len(out) < limit:
            self._members += 1
            if self._members > _MAX_MEMBERS:
                raise zlib.error(f"more than {_MAX_MEMBERS} gzip members")
            rest = self._inflate.unused_data
            self._inflate = zlib.decompressobj(31)
            out += self._inflate.decompress(rest, limit - len(out))
        return bytes(out)


async def _read_at_most(
    resp: aiohttp.ClientResponse, cap: int, inflater: _Inflater | None
) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of the body (inflated, with an inflater), and whether that was all
    of it. What arrives on the wire is capped too: a compressed body that inflates to little
    may still be endless."""
    chunks: list[bytes] = []
    size = wire = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        wire += len(chunk)
        if inflater is not None:
            chunk = inflater.feed(chunk, cap - size + 1)  # one more: to see it go past
        if size + len(chunk) > cap or wire > cap:
            chunks.append(chunk[: cap - size])
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), True
