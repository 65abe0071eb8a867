"""JSON in one place: orjson with the ``speedups`` extra, the standard library otherwise.

orjson refuses to encode integers beyond 64 bits, so encoding falls back to the standard library
there. When decoding, orjson reads such integers as floats (no Wachat response carries one; a
model's integer field would refuse the float with a ResponseValidationError).
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

orjson: ModuleType | None
try:
    import orjson
except ImportError:  # the plain install
    orjson = None

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


_json_loads = json.loads


def _std_loads(data: bytes | str) -> Any:
    """``json.loads``, with plain UTF-8 bytes decoded first, as ``json.loads`` would decode them
    (``surrogatepass``): its encoding detection runs in Python code and costs a fifth of the
    parse. Bytes that may be another encoding or start with a BOM go through that detection."""
    if type(data) is bytes and len(data) > 1 and data[0] not in _DETECTED and data[1]:
        return _json_loads(data.decode("utf-8", "surrogatepass"))
    return _json_loads(data)


#: First bytes that make ``json.loads`` look closer (NUL: UTF-16/32; BOMs of UTF-8/16/32).
_DETECTED = frozenset({0x00, 0xEF, 0xFE, 0xFF})


def _std_dumps(obj: Any) -> bytes:
    return _encoder.encode(obj).encode()


if orjson is not None:
    _fast = orjson

    def loads(data: bytes | str) -> Any:
        try:
            return _fast.loads(data)
        except _fast.JSONDecodeError:
            return _std_loads(data)  # the standard library's error (or, rarely, its answer)

    def dumps(obj: Any) -> bytes:
        try:
            data: bytes = _fast.dumps(obj)
        except TypeError:
            return _std_dumps(obj)
        return data

else:
    loads = _std_loads
    dumps = _std_dumps


JSONDecodeError = ValueError  # both json.JSONDecodeError and orjson.JSONDecodeError subclass it
