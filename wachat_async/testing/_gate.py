"""The API's front door: every request under ``/api/v1`` is counted, recorded, may meet a
scripted fault, and must carry an API key.

Order, as a real gateway behaves: a ``STATUS`` or ``DROP_BEFORE`` fault answers before the
key is even looked at; otherwise the key is checked (401), then the handler runs, and a
:class:`~wachat_async.testing._web.Refused` becomes its JSON error answer.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

import attrs
from aiohttp import web

from .._status import SANDBOX_HEADER
from ._faults import Fault, FaultKind, FaultPlan, Handler, answer_with_fault
from ._web import Refused, bearer_key, error_response, refusal_response

API_PREFIX = "/api/v1"

# apiKey in the query is documented for the <img>/<iframe> endpoints only.
#: Marks the sandbox's refusal of a key, so the client can say which key the sandbox takes.
SANDBOX_MARK = {SANDBOX_HEADER: "1"}
_QUERY_KEY_PATHS = (f"{API_PREFIX}/instance/qr", f"{API_PREFIX}/instance/profile-picture")


@attrs.frozen
class RecordedRequest:
    """A request the fake received (the ``Authorization`` header is not kept)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    content_type: str


@attrs.frozen
class Exchange:
    """A request and the answer the fake gave, for contract checks."""

    request: RecordedRequest
    status: int
    content_type: str
    body: Any  # decoded JSON, or None for binary/HTML bodies
    fault: FaultKind | None


class Gate:
    """The middleware of the API application (see the module docstring)."""

    def __init__(
        self,
        *,
        api_keys: Callable[[], Collection[str]],
        faults: FaultPlan,
        stats: Counter[str],
        record: bool,
    ) -> None:
        self.faults = faults
        self.stats = stats
        #: Whether requests and answers are kept in :attr:`requests` and :attr:`exchanges`.
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.exchanges: list[Exchange] = []
        self._api_keys = api_keys

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path.removeprefix(API_PREFIX)
        self.stats[f"requests {request.method} {path}"] += 1
        recorded = await self._record(request, path)
        fault = self.faults.take(request.method, path)

        async def handle(request: web.Request) -> web.StreamResponse:
            if not self._authorized(request):
                return error_response(401, "Invalid or missing API key", headers=SANDBOX_MARK)
            try:
                return await handler(request)
            except Refused as refusal:
                return refusal_response(refusal)

        if fault is None:
            response = await handle(request)
        else:
            self.stats[f"faults.{fault.kind.value}"] += 1
            response = await answer_with_fault(request, handle, fault)
        if recorded is not None and isinstance(response, web.Response):
            self._record_answer(recorded, response, fault)
        return response

    def _authorized(self, request: web.Request) -> bool:
        keys = self._api_keys()
        if bearer_key(request) in keys:
            return True
        return request.path.startswith(_QUERY_KEY_PATHS) and request.query.get("apiKey") in keys

    async def _record(self, request: web.Request, path: str) -> RecordedRequest | None:
        if not self.record:
            return None
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
        query = {k: v for k, v in request.query.items() if k != "apiKey"}
        recorded = RecordedRequest(request.method, path, query, body, request.content_type)
        self.requests.append(recorded)
        return recorded

    def _record_answer(
        self, request: RecordedRequest, response: web.Response, fault: Fault | None
    ) -> None:
        body: Any = None
        if response.content_type == "application/json" and isinstance(response.body, bytes):
            with contextlib.suppress(ValueError):
                body = json.loads(response.body)
        self.exchanges.append(
            Exchange(
                request, response.status, response.content_type, body, fault.kind if fault else None
            )
        )
