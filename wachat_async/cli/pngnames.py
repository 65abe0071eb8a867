"""The file name of an instance's QR PNG: one per friendly name, readable, short, portable,
and never the file of another name.

The name is a slug: ASCII letters (accents dropped), digits, ``.``, ``_`` and ``-``, lower
case, at most :data:`SLUG_CHARS` characters. When the slug is the friendly name itself, that is
the file name (``store_0007.png``). Otherwise (the slug changed the name, or the name looks
like a hashed one, or is a name Windows reserves) :data:`HASH_CHARS` hex digits of the SHA-256
of the exact name follow it (``north_1-3f2a9c01b7de.png`` for ``north/1``). Windows reserves
device names (``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM0``-``COM9``, ``LPT0``-``LPT9``, in any
case and with superscript digits, which the slug makes plain ones) as the part of a file name
before its first dot: a slug whose part is one gets ``_`` after it (``prn_.txt-<hash>.png``).

So two names never share a file: unchanged names keep themselves (lower case only, so not even
a case-insensitive file system folds two together, and they never end like a hashed name);
changed ones differ by their hash unless 48 bits of SHA-256 collide. The same name always gets
the same file, so a re-run finds what an earlier run saved.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

#: The most characters kept of the name's slug.
SLUG_CHARS = 60
#: Hex digits of SHA-256 added when the slug is not the name itself.
HASH_CHARS = 12

_OTHER = re.compile(r"[^a-z0-9._-]+")
_HASHED = re.compile(rf"-[0-9a-f]{{{HASH_CHARS}}}$")
_EDGES = "._-"
# Windows refuses these as a file name, whatever the extension.
_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"] + [f"{d}{n}" for d in ("com", "lpt") for n in range(10)]
)


def png_name(instance_name: str) -> str:
    """The QR PNG file name for the instance with this friendly name (under 100 bytes)."""
    ascii_text = unicodedata.normalize("NFKD", instance_name).encode("ascii", "ignore").decode()
    slug = _OTHER.sub("_", ascii_text.lower()).strip(_EDGES)[:SLUG_CHARS].rstrip(_EDGES)
    if (
        slug
        and slug == instance_name
        and not _HASHED.search(slug)
        and slug.split(".", 1)[0] not in _RESERVED
    ):
        return f"{slug}.png"
    digest = hashlib.sha256(instance_name.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{_not_a_device(slug) or 'instance'}-{digest[:HASH_CHARS]}.png"


def _not_a_device(slug: str) -> str:
    """``slug`` with ``_`` after its part before the first dot when that part is a device name
    (``prn.txt`` -> ``prn_.txt``): Windows reads ``prn.txt-<hash>.png`` as the printer."""
    head, dot, rest = slug.partition(".")
    return f"{head}_{dot}{rest}" if dot and head in _RESERVED else slug
