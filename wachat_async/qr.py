"""QR helpers: decode a data URI, save a PNG, render a QR payload in a terminal, an HTML snippet.

Decoding and saving need nothing beyond the standard library. Rendering a payload (turning the
``code`` string into a QR) needs the ``qr`` extra: ``pip install 'wachat-async[qr]'``.
"""

from __future__ import annotations

import base64
import binascii
import html
import os
import tempfile
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_URI_PREFIX = "data:image/png;base64,"

__all__ = ["PNG_SIGNATURE", "decode_data_uri", "html_img", "render_terminal", "save_png"]


def decode_data_uri(uri: str) -> bytes:
    """PNG bytes from ``data:image/png;base64,...`` (a bare base64 string is accepted too).

    Raises ``ValueError`` with a clear message when it is not base64 or not a PNG.
    """
    if not isinstance(uri, str):
        raise ValueError(f"expected a data URI string, got {type(uri).__name__}")
    payload = uri.strip()
    if payload.startswith("data:"):
        header, sep, payload = payload.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ValueError(f"not a base64 data URI: {header[:40]!r}")
        if header.lower() != _PNG_URI_PREFIX[:-1]:
            raise ValueError(f"expected an image/png data URI, got {header[:40]!r}")
    try:
        png = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"QR image is not valid base64: {exc}") from None
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("QR image decodes, but is not a PNG (bad signature)")
    return png


def save_png(png: bytes, path: str | os.PathLike[str]) -> Path:
    """Write ``png`` atomically (temporary file, then rename) and return the path."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("refusing to save: not PNG data")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(png)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def render_terminal(payload: str, *, border: int = 2) -> str:
    """The QR for ``payload`` drawn with Unicode half blocks, scannable from a terminal."""
    try:
        import segno
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "Rendering a QR needs the 'qr' extra: pip install 'wachat-async[qr]'"
        ) from None
    matrix = [list(row) for row in segno.make_qr(payload, error="l").matrix]
    size = len(matrix)
    quiet = [[False] * (size + 2 * border) for _ in range(border)]
    rows = (
        quiet + [[False] * border + [bool(c) for c in r] + [False] * border for r in matrix] + quiet
    )
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    # Light text on dark terminals is common, so draw light modules as blocks ("inverted").
    chars = {(False, False): "█", (False, True): "▀", (True, False): "▄", (True, True): " "}
    lines = [
        "".join(chars[(top, bottom)] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(rows[0::2], rows[1::2], strict=True)
    ]
    return "\n".join(lines)


def html_img(data_uri: str, *, alt: str = "WhatsApp QR code", size: int = 264) -> str:
    """An ``<img>`` tag showing the QR, for dashboards and bots that render HTML."""
    return (
        f'<img src="{html.escape(data_uri, quote=True)}" alt="{html.escape(alt, quote=True)}" '
        f'width="{size}" height="{size}" />'
    )
