"""Keeping the API key secret, and knowing when plain http is acceptable.

:class:`Redactor` removes the key from any text a server or a library may hand back: verbatim,
JSON-escaped, URL-encoded (either case of hex, ``+`` or ``%20`` for spaces), base64-encoded, and
in part (a run of :data:`FRAGMENT` characters or more of any of those forms), so a message that
quotes or truncates an echoed key still shows none of it.
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
    return {f for f in forms if f}


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
        return self._mask_fragments(text)

    def _mask_fragments(self, text: str) -> str:
        size, fragments = self._size, self._fragments
        hidden: list[tuple[int, int]] = []
        for start in range(len(text) - size + 1):
            if text[start : start + size] in fragments:
                end = start + size
                if hidden and start <= hidden[-1][1]:
                    hidden[-1] = (hidden[-1][0], end)
                else:
                    hidden.append((start, end))
        if not hidden:
            return text
        pieces, cursor = [], 0
        for start, end in hidden:
            pieces += [text[cursor:start], REDACTED]
            cursor = end
        pieces.append(text[cursor:])
        return "".join(pieces)

    def snippet(self, text: str, limit: int) -> str:
        """The redacted start of ``text``, at most ``limit`` characters (plus an ellipsis).

        Redacts before cutting, so a key cut in half by the limit is still hidden.
        """
        margin = limit + 4 * max((len(f) for f in self._forms), default=0)
        clean = self(text[:margin])
        return clean if len(clean) <= limit else clean[:limit] + "…"


def key_fingerprint(secret: str, salt: bytes) -> str:
    """A one-way fingerprint of an API key (PBKDF2-SHA256), to tell accounts apart on disk."""
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, 100_000).hex()


def same_fingerprint(secret: str, salt: bytes, fingerprint: str) -> bool:
    return hmac.compare_digest(key_fingerprint(secret, salt), fingerprint)
