"""Webhook signatures: HMAC-SHA256, keyed with the webhook secret, over
``"<X-Wachat-Timestamp>.<raw body>"``, sent in ``X-Wachat-Signature``.

Its encoding is not published, so :func:`verify_signature` accepts hex (either case) and
base64 (standard or URL-safe, padded or not), each with or without a ``sha256=`` prefix, and
compares in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import time
from collections.abc import Sequence

from .. import _validate as check
from ..errors import WebhookSignatureError

__all__ = ["DEFAULT_TOLERANCE", "sign", "signature_digest", "verify_signature"]

#: Seconds a delivery's timestamp may be away from now.
DEFAULT_TOLERANCE = 300.0


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(secret: str | bytes, timestamp: str | int, body: str | bytes) -> str:
    """The lowercase hex HMAC-SHA256 of ``"<timestamp>.<body>"``: sign your own test deliveries."""
    message = _as_bytes(str(timestamp)) + b"." + _as_bytes(body)
    return hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()


def signature_digest(signature: str) -> bytes | None:
    """The 32-byte digest in a hex or base64 signature, with or without ``sha256=``."""
    value = signature.strip()
    if value[:7].lower() == "sha256=":
        value = value[7:].strip()
    if len(value) == 64:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    padded = value + "=" * (-len(value) % 4)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            digest = decoder(padded.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
        if len(digest) == 32:
            return digest
    return None


def timestamp_seconds(timestamp: str | int | float) -> float:
    """Seconds since the epoch from a timestamp in seconds or milliseconds."""
    try:
        value = float(timestamp)
    except (TypeError, ValueError):
        raise WebhookSignatureError("timestamp is not a number") from None
    if not math.isfinite(value):
        raise WebhookSignatureError("timestamp is not a finite number")
    return value / 1000.0 if value > 1e11 else value  # milliseconds since the epoch


def verify_signature(
    secret: str | bytes | Sequence[str | bytes],
    timestamp: str | int | float | None,
    body: str | bytes,
    signature: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bytes:
    """Check a delivery; raise :class:`WebhookSignatureError` saying which check failed.

    ``secret`` may be a list while you rotate secrets: any one of them may match. ``timestamp``
    must be within ``tolerance`` seconds of ``now`` (seconds or milliseconds since the epoch);
    a ``tolerance`` that is not a finite positive number raises InvalidRequestError.
    Returns the verified digest (the same for every encoding of one signature: a replay cache
    can key on it).
    """
    if not (type(tolerance) is float and 0 < tolerance < math.inf):  # NaN compares False
        tolerance = check.seconds("tolerance", tolerance)  # else every timestamp would pass
    if not signature or not signature.strip():
        raise WebhookSignatureError("missing signature")
    if timestamp is None or not str(timestamp).strip():
        raise WebhookSignatureError("missing timestamp")
    sent_at = timestamp_seconds(timestamp)
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise WebhookSignatureError(
            f"timestamp is {current - sent_at:+.0f} s from now, "
            f"outside the {tolerance:g} s tolerance"
        )
    digest = signature_digest(signature)
    if digest is None:
        raise WebhookSignatureError("signature is neither hex nor base64 SHA-256")
    secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
    if not secrets or any(not s for s in secrets):
        raise WebhookSignatureError("no webhook secret configured")
    message = str(timestamp).strip().encode() + b"." + _as_bytes(body)
    matched = False
    for key in secrets:
        expected = hmac.new(_as_bytes(key), message, hashlib.sha256).digest()
        matched |= hmac.compare_digest(expected, digest)
    if not matched:
        raise WebhookSignatureError("signature does not match the body and timestamp")
    return digest
