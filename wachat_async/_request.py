"""What is sent: an operation described once (:class:`Call`, a module constant), and one
request of it (:class:`Request`: the call, its query, its body, its timeout), the one value that
goes from the executor through the retry loop to the transport."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JSON = "application/json"
PNG = "image/png"
ANY = "*/*"

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class Call:
    """One API operation, described once (a module constant): its method and path, what it
    accepts, and whether resending it is harmless."""

    __slots__ = ("accept", "idempotent", "method", "operation", "path")

    def __init__(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        accept: str = JSON,
        idempotent: bool | None = None,
    ) -> None:
        #: Name used in logs and errors, e.g. ``instances.create``.
        self.operation = operation
        self.method = method
        self.path = path
        self.accept = accept
        #: Safe to resend after an ambiguous failure: reads, deletes and updates by id.
        self.idempotent = method in _IDEMPOTENT if idempotent is None else idempotent

    def __repr__(self) -> str:
        return f"Call({self.operation!r}, {self.method} {self.path})"

    def _key(self) -> tuple[str, str, str, str, bool]:
        return (self.operation, self.method, self.path, self.accept, self.idempotent)

    # A value: an error that carries one (OutcomeUnknownError.request) compares equal to its
    # pickled or copied self.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Call) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_call, self._key())


def _rebuild_call(operation: str, method: str, path: str, accept: str, idempotent: bool) -> Call:
    return Call(operation, method, path, accept=accept, idempotent=idempotent)


class Request:
    """One request of a :class:`Call`: its query, its JSON body and its timeout in seconds.
    Built once per call and sent as it is by every attempt."""

    __slots__ = ("body", "call", "query", "timeout")

    def __init__(
        self, call: Call, query: Mapping[str, str] | None, body: Any, timeout: float
    ) -> None:
        self.call = call
        self.query = query
        self.body = body
        self.timeout = timeout

    def __repr__(self) -> str:  # the body may hold personal data: not shown
        return f"Request({self.call.operation!r}, {self.call.method} {self.call.path})"
