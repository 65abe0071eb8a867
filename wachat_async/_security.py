"""Keeping the API key (and a proxy's credentials) secret, and knowing when plain http is
acceptable.

:class:`Redactor` removes each secret from any text a server, a proxy or a library may hand
back: in any letter case (a server may lowercase it in ``Set-Cookie``), verbatim, JSON-escaped
(``\\/``, ``\\u002f``, any mix of escaped and plain characters), URL-encoded (``+`` or ``%20``
for spaces), base64-encoded (alone, or inside a longer base64 text such as
``Basic base64("user:" + key)``), and in part (a run of :data:`FRAGMENT` characters of any of
those forms), so a message that quotes or truncates an echoed key still shows none of it.

How much of a secret counts as the secret depends on its length, so that a short key (``test``,
``dev``, ``k``) does not cut letters out of ordinary words (``Invalid or missing API key``):

- a secret of :data:`SHORT` characters or more is removed wherever any of its forms appears,
  and so is any :data:`FRAGMENT`-character run of them (8 characters of a key are too many to
  occur in ordinary text by chance);
- a shorter secret is removed only where one of its forms stands alone, its first and last
  letters or digits not glued to another: ``Bearer k``, ``key=k&``, ``"dev"`` lose it, ``key``
  and ``device`` keep their letters. The trade-off: a short secret written inside a longer
  word, or inside a longer base64 text, stays; there it cannot be told from the letters
  around it anyway, and hiding it would garble every message. Its base64 standing alone
  (``token=dGVzdA==``, ``Basic dTpwdw==``) is removed in its own case only, and only for a
  secret of 4 characters or more: the base64 of fewer is two to four letters, and in any case
  ``THE`` is the base64 of ``Lq``.

A secret of 8 to 15 characters made of dictionary words (``localhost1``) still hides the
pieces of it that ordinary text may hold (``localhos``): secrecy first, for a key that long.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote

REDACTED = "***"

#: Secrets at least this long are hidden anywhere, in whole or in part; shorter ones only where
#: they stand alone (see the module's docstring).
SHORT = 8
#: The shortest run of a (long) secret's characters that is treated as a piece of it.
FRAGMENT = 8
#: A short secret's base64 shorter than this (the base64 of 1 to 3 bytes) is not looked for:
#: it is two to four letters that ordinary words hold.
_SHORT_BASE64 = 6
#: A URL's ``scheme://``.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
#: A URL's ``scheme://`` and the ``user:password@`` after it.
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@'\"<>]+@")


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


def _encoded_forms(secret: str) -> tuple[set[str], set[str]]:
    """Every spelling of ``secret`` a server may echo back: its text (verbatim, JSON-escaped,
    URL-encoded), lowercase since matching ignores case; and its base64, as it is."""
    text: set[str] = set()
    encoded: set[str] = set()
    for spelling in {secret, secret.lower(), secret.upper()}:
        raw = spelling.encode()
        text |= {spelling, json.dumps(spelling)[1:-1], spelling.replace("/", "\\/")}
        text |= {quote(spelling, safe=""), quote_plus(spelling, safe=""), quote(spelling)}
        whole = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
        encoded |= whole | {e.rstrip("=") for e in whole}
        if len(secret) >= SHORT:  # a short secret's inner base64 is a few letters of any text
            encoded |= _base64_inside(raw)
    return {_folded(f) for f in text if f}, {e for e in encoded if e}


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


def _folded(text: str) -> str:
    """``text`` lowercase, character for character (so positions in it are positions in
    ``text``): the rare character whose lowercase is longer (``İ``) is kept as it is."""
    lowered = text.lower()
    if len(lowered) == len(text):  # each character became exactly one
        return lowered
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


#: A JSON escape (``\\uXXXX`` or ``\\/``, ``\\n``...) or a URL escape (``%2F``, ``%2f``).
_ESCAPE = re.compile(r"\\[uU]([0-9a-fA-F]{4})|\\(.)|%([0-9a-fA-F]{2})", re.DOTALL)
_JSON_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
#: Escaping applied on top of escaping that is still unwound (JSON quoted in JSON in a URL).
_UNESCAPE_ROUNDS = 3


class Redactor:
    """Replaces every trace of some secrets (the API key, a proxy's credentials) in text with
    ``***``. Cheap when there is none."""

    __slots__ = ("_alone", "_alone_exact", "_anywhere", "_fragments", "_longest")

    def __init__(self, *secrets: str) -> None:
        #: Forms of long secrets, hidden wherever they appear in any case, longest first.
        anywhere: set[str] = set()
        #: Text forms of short secrets, hidden in any case where they stand alone.
        alone: set[str] = set()
        #: Base64 forms of short secrets, hidden in their own case where they stand alone: in
        #: any case, two or three letters of base64 are ordinary words (``THE`` is ``Lq``).
        alone_exact: set[str] = set()
        for secret in filter(None, secrets):
            text, encoded = _encoded_forms(secret)
            if len(secret) >= SHORT:
                anywhere |= text | {_folded(e) for e in encoded}
            else:
                alone |= text
                alone_exact |= {e for e in encoded if len(e) >= _SHORT_BASE64}
        self._anywhere = sorted(anywhere, key=len, reverse=True)
        self._alone = sorted(alone - anywhere, key=len, reverse=True)
        self._alone_exact = sorted(alone_exact, key=len, reverse=True)
        self._fragments = {
            form[i : i + FRAGMENT] for form in anywhere for i in range(len(form) - FRAGMENT + 1)
        }
        self._longest = max(map(len, anywhere | alone | alone_exact), default=0)

    def __repr__(self) -> str:
        return "Redactor(***)"

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if "@" in text and "://" in text:
            # Any URL's credentials, known or not (a caller's session may carry its own proxy).
            text = _USERINFO.sub(r"\1***@", text)
        if not self._longest:
            return text
        hidden = self._hidden(text)
        if "\\" in text or "%" in text:
            hidden += self._hidden_escaped(text)
        return _masked(text, sorted(hidden))

    def _hidden(self, text: str) -> list[tuple[int, int]]:
        """The spans of ``text`` that are a secret, or a piece of one, in any letter case."""
        folded = _folded(text)
        hidden = [
            span for form in self._anywhere if form in folded for span in _occurrences(folded, form)
        ]
        hidden += [
            (start, end)
            for form in self._alone
            if form in folded
            for start, end in _occurrences(folded, form)
            if _stands_alone(folded, start, end)
        ]
        hidden += [
            (start, end)
            for form in self._alone_exact
            if form in text
            for start, end in _occurrences(text, form)
            if _stands_alone(text, start, end)
        ]
        fragments = self._fragments
        if fragments:
            hidden += [
                (start, start + FRAGMENT)
                for start in range(len(folded) - FRAGMENT + 1)
                if folded[start : start + FRAGMENT] in fragments
            ]
        return hidden

    def _hidden_escaped(self, text: str) -> list[tuple[int, int]]:
        """Where a secret's characters are escaped one by one, in any mix (a JSON encoder
        escaping ``/`` and ``+`` as ``\\u002f``, a URL with lowercase hex), or escaped twice (a
        JSON-escaped key quoted in JSON): the text is read unescaped, and the spans found
        there are given back as spans of the original."""
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
        return hidden

    def snippet(self, text: str, limit: int) -> str:
        """The redacted start of ``text``, at most ``limit`` characters (plus an ellipsis).

        Redacts before cutting, so a key cut in half by the limit is still hidden; the margin
        read past the limit covers a key escaped character by character (``\\u00xx`` each).
        """
        margin = limit + 8 * self._longest
        clean = self(text[:margin])
        return clean if len(clean) <= limit else clean[:limit] + "…"


def _stands_alone(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is not glued to a letter or digit: on a side where it ends
    in one itself, the character beyond is not one (``Bearer k``, not ``key``)."""
    glued_before = start > 0 and text[start].isalnum() and text[start - 1].isalnum()
    glued_after = end < len(text) and text[end - 1].isalnum() and text[end].isalnum()
    return not (glued_before or glued_after)


def _occurrences(text: str, form: str) -> Iterable[tuple[int, int]]:
    """The spans where ``form`` appears in ``text``, overlapping ones included."""
    start = text.find(form)
    while start >= 0:
        yield start, start + len(form)
        start = text.find(form, start + 1)


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


def without_credentials(url: str) -> str:
    """``url`` with any ``user:password@`` shown as ``***@``."""
    scheme, userinfo, rest = _credentials(url)
    return url if userinfo is None else f"{scheme}***@{rest}"


def url_credentials(url: str | None) -> tuple[str, ...]:
    """The credentials in a URL (a proxy's), as written and decoded, whole and each part, to
    redact (a proxy echoes ``user:password`` in a 407, base64-encoded in
    ``Proxy-Authorization``); none for a URL without."""
    userinfo = _credentials(url or "")[1]
    if not userinfo:
        return ()
    user, _, password = userinfo.partition(":")
    spellings = {userinfo, user, password}
    spellings |= {unquote(s) for s in spellings}
    return tuple(sorted(s for s in spellings if s))


def _credentials(url: str) -> tuple[str, str | None, str]:
    """``url`` as its ``scheme://``, its userinfo (None without an ``@``) and the rest. All up
    to the last ``@`` counts as userinfo: a password with an unescaped ``/`` or ``#`` stays
    hidden although the URL is malformed."""
    match = _SCHEME.match(url)
    scheme = match.group() if match else ""
    userinfo, at, rest = url[len(scheme) :].rpartition("@")
    return (scheme, userinfo, rest) if at else (scheme, None, url[len(scheme) :])


def key_fingerprint(secret: str, salt: bytes) -> str:
    """A one-way fingerprint of an API key (PBKDF2-SHA256), to tell accounts apart on disk."""
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, 100_000).hex()


def same_fingerprint(secret: str, salt: bytes, fingerprint: str) -> bool:
    return hmac.compare_digest(key_fingerprint(secret, salt), fingerprint)
