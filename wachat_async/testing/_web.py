"""What the fake API and the sandbox control endpoints share over HTTP.

One exception that means "the fake says no" (:class:`Refused`), the JSON error answer it
becomes (``{"success": false, "error": "..."}``), reading a JSON object body, and the bearer
key of a request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web


class Refused(Exception):
    """The fake refuses: answered as ``{"success": false, "error": message}`` with ``status``.

    Raised by request validation and by the sandbox's state machine alike, so an in-process
    control call (``server.rotate_qr(...)``) and its HTTP twin fail with the same words.
    """

    def __init__(
        self, message: str, status: int = 400, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


def error_response(
    status: int, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response({"success": False, "error": message}, status=status, headers=headers)


def refusal_response(refusal: Refused) -> web.Response:
    return error_response(refusal.status, str(refusal), headers=refusal.headers)


async def json_object(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object body; ``{}`` for an empty body when not ``required``."""
    raw = await request.read()
    if not raw and not required:
        return {}
    if request.content_type != "application/json":
        raise Refused("Content-Type must be application/json")
    try:
        data = json.loads(raw)
    except ValueError:
        raise Refused("Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Refused("Request body must be a JSON object")
    return data


def bearer_key(request: web.Request) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, if there is one."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else None
