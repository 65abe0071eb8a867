"""JSON in one place: orjson with the ``speedups`` extra, the standard library otherwise."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - exercised by the plain install
    orjson = None

if orjson is not None:  # pragma: no cover - exercised with the speedups extra
    loads = orjson.loads

    def dumps(obj: Any) -> bytes:
        data: bytes = orjson.dumps(obj)
        return data

else:

    def loads(data: bytes | str) -> Any:
        return json.loads(data)

    _encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

    def dumps(obj: Any) -> bytes:
        return _encoder.encode(obj).encode()


JSONDecodeError = ValueError  # both json.JSONDecodeError and orjson.JSONDecodeError subclass it
