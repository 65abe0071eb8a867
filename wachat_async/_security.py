"""Keeping the API key secret, and knowing when plain http is acceptable.

:class:`Redactor` removes the key from any text a server or a library may hand back: verbatim,
JSON-escaped (``\\/``, ``\\u002f``, any mix of escaped and plain characters), URL-encoded (either
case of hex, ``+`` or ``%20`` for spaces), base64-encoded (alone, or inside a longer base64
text such as ``Basic base64("user:" + key)``), and in part (a run of :data:`FRAGMENT`
characters or more of any of those forms), so a message that quotes or truncates an echoed key
still shows none of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
from urllib.parse import quote, quote_plus

REDACTED = "***"

#: The shortest run of the key's characters that is treated as a piece of the key.
FRAGMENT = 6


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ``::1``)."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _encoded_forms(secret: str) -> set[str]:
    """Every spelling of ``secret`` a server may echo back."""
    percent = {quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret)}
    forms = {secret, json.dumps(secret)[1:-1], secret.replace("/", "\\/")}
    forms |= percent | {_lower_hex(p) for p in percent}
    raw = secret.encode()
    forms |= {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    forms |= {f.rstrip("=") for f in list(forms)}
    forms |= _base64_inside(raw)
    return {f for f in forms if f}


def _base64_inside(raw: bytes) -> set[str]:
    """The characters of ``raw``'s base64 that do not depend on what precedes or follows it,
    at each of the three byte alignments: inside a longer base64 text (``user:<key>``,
    ``Bearer <key>``) the key's own base64 is shifted and its edges differ."""
    inner = set()
    for offset in (1, 2):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw).decode()
            first = -(-offset * 8 // 6)  # the first character made of the key's bits only
            inner.add(encoded[first : len(encoded) - 4])
    return inner


#: A JSON escape (``\\uXXXX`` or ``\\/``, ``\\n``...) or a URL escape (``%2F``, ``%2f``).
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\(.)|%([0-9a-fA-F]{2})", re.DOTALL)
_JSON_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
#: Escaping applied on top of escaping that is still unwound (JSON quoted in JSON in a URL).
_UNESCAPE_ROUNDS = 3


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


class Redactor:
    """Replaces every trace of one secret in text with ``***``. Cheap when there is none."""

    __slots__ = ("_forms", "_fragments", "_size")

    def __init__(self, secret: str) -> None:
        forms = _encoded_forms(secret) if secret else set()
        # Whole forms, longest first, then any FRAGMENT-long run of a form.
        self._forms = sorted(forms, key=len, reverse=True)
        self._size = min((len(f) for f in forms), default=0)
        self._size = min(self._size, FRAGMENT)
        self._fragments = {
            form[i : i + self._size] for form in forms for i in range(len(form) - self._size + 1)
        }

    def __repr__(self) -> str:
        return "Redactor(***)"

    def __call__(self, text: str) -> str:
        if not self._fragments or not text:
            return text
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        if "\\" in text or "%" in text:  # first: a masked piece would split an escaped key
            text = self._mask_escaped(text)
        return _masked(text, self._hidden(text))

    def _hidden(self, text: str) -> list[tuple[int, int]]:
        """The spans of ``text`` made of pieces of the key, overlapping ones merged."""
        size, fragments = self._size, self._fragments
        hidden: list[tuple[int, int]] = []
        for start in range(len(text) - size + 1):
            if text[start : start + size] in fragments:
                end = start + size
                if hidden and start <= hidden[-1][1]:
                    hidden[-1] = (hidden[-1][0], end)
                else:
                    hidden.append((start, end))
        return hidden

    def _mask_escaped(self, text: str) -> str:
        """Hide the key where its characters are escaped one by one, in any mix (a JSON
        encoder escaping ``/`` and ``+`` as ``\\u002f``, a URL with lowercase hex), or escaped
        twice (a JSON-escaped key quoted in JSON): the text is read unescaped, and what is
        found there is hidden in the original."""
        plain = text
        origin = [(i, i + 1) for i in range(len(text))]  # where each character came from
        hidden: list[tuple[int, int]] = []
        for _ in range(_UNESCAPE_ROUNDS):
            unescaped = _unescape(plain)
            if unescaped is None:
                break
            plain, spans = unescaped
            origin = [(origin[start][0], origin[end - 1][1]) for start, end in spans]
            hidden += [(origin[start][0], origin[end - 1][1]) for start, end in self._hidden(plain)]
        return _masked(text, sorted(hidden))

    def snippet(self, text: str, limit: int) -> str:
        """The redacted start of ``text``, at most ``limit`` characters (plus an ellipsis).

        Redacts before cutting, so a key cut in half by the limit is still hidden; the margin
        read past the limit covers a key escaped character by character (``\\u00xx`` each).
        """
        margin = limit + 8 * max((len(f) for f in self._forms), default=0)
        clean = self(text[:margin])
        return clean if len(clean) <= limit else clean[:limit] + "…"


def _unescape(text: str) -> tuple[str, list[tuple[int, int]]] | None:
    """``text`` with its JSON and URL escapes read, and the span of ``text`` each character
    came from; None when there are none."""
    plain: list[str] = []
    spans: list[tuple[int, int]] = []
    cursor = 0
    for match in _ESCAPE.finditer(text):
        for i in range(cursor, match.start()):
            plain.append(text[i])
            spans.append((i, i + 1))
        code, char, hex_byte = match.groups()
        if code is not None:
            plain.append(chr(int(code, 16)))
        elif char is not None:
            plain.append(_JSON_ESCAPES.get(char, char))
        else:
            plain.append(chr(int(hex_byte, 16)))
        spans.append(match.span())
        cursor = match.end()
    if not cursor:
        return None
    for i in range(cursor, len(text)):
        plain.append(text[i])
        spans.append((i, i + 1))
    return "".join(plain), spans


def _masked(text: str, hidden: list[tuple[int, int]]) -> str:
    """``text`` with each of the (ordered) spans ``hidden`` replaced by ``***``."""
    if not hidden:
        return text
    pieces: list[str] = []
    cursor = 0
    for start, end in hidden:  # ordered by start; they may overlap
        if end <= cursor:
            continue
        if start > cursor or not pieces:
            pieces += [text[cursor:start], REDACTED]
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def key_fingerprint(secret: str, salt: bytes) -> str:
    """A one-way fingerprint of an API key (PBKDF2-SHA256), to tell accounts apart on disk."""
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, 100_000).hex()


def same_fingerprint(secret: str, salt: bytes, fingerprint: str) -> bool:
    return hmac.compare_digest(key_fingerprint(secret, salt), fingerprint)
