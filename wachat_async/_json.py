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


_std_loads = json.loads


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
    loads = _std_loads  # type: ignore[assignment]  # the same contract, one frame less
    dumps = _std_dumps


JSONDecodeError = ValueError  # both json.JSONDecodeError and orjson.JSONDecodeError subclass it
