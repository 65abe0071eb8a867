"""AsyncWachat: wires settings, the transport and the operation groups together."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
import attrs

from . import _convert
from ._config import Settings, resolve_settings
from ._http import Call, RawResponse, Transport
from ._retry import RetryPolicy, mark_resend_safe, retry_after_failure
from .errors import (
    FailureClass,
    NotFoundError,
    OutcomeUnknownError,
    ResponseValidationError,
    WachatError,
)
from .instances import AsyncInstances
from .messages import AsyncMessages
from .webhooks import AsyncWebhooks

T = TypeVar("T")

#: Called when a non-idempotent call failed ambiguously: ``(error, started, processed)`` where
#: ``started`` is the wall-clock time the first attempt began and ``processed`` is True when the
#: server answered 2xx with an unreadable body. Returns the result found, None when nothing
#: happened (safe to resend), or raises OutcomeUnknownError.
Reconciler = Callable[[WachatError, float, bool], Awaitable[T | None]]


class AsyncWachat:
    """Async client for the Wachat Enterprise API.

    ::

        async with AsyncWachat() as wa:               # key from WACHAT_API_KEY
            created = await wa.instances.create("jakarta_store", number="628123456789")
            created.qrcode.save("qr.png")

    One client holds one connection pool; share it across tasks. Pass ``session=`` to reuse
    your own :class:`aiohttp.ClientSession` (the client then never closes it).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        session: aiohttp.ClientSession | None = None,
        allow_insecure_http: bool = False,
        retry_policy: RetryPolicy | None = None,
        reconcile: bool = True,
        settle_delay: float = 3.0,
        connect_timeout: float = 10.0,
        pool_limit: int = 100,
    ) -> None:
        settings = resolve_settings(
            api_key,
            base_url,
            timeout=timeout,
            max_retries=max_retries,
            allow_insecure_http=allow_insecure_http,
            retry=retry_policy,
            reconcile=reconcile,
            settle_delay=settle_delay,
            connect_timeout=connect_timeout,
            pool_limit=pool_limit,
        )
        transport = Transport(
            api_key=settings.api_key,
            base_url=settings.base_url,
            connect_timeout=settings.connect_timeout,
            pool_limit=settings.pool_limit,
            session=session,
        )
        self._setup(settings, transport, owns_transport=True)

    def _setup(self, settings: Settings, transport: Transport, *, owns_transport: bool) -> None:
        self._settings = settings
        self._transport = transport
        self._owns_transport = owns_transport
        self.instances = AsyncInstances(self)
        self.messages = AsyncMessages(self)
        self.webhooks = AsyncWebhooks(self)

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._settings.base_url!r}, api_key='***')"

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        reconcile: bool | None = None,
        settle_delay: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> Self:
        """A client with other defaults that shares this one's connection pool.

        Closing the derived client does nothing; close the original.
        """
        policy = retry_policy or self._settings.retry
        if max_retries is not None:
            policy = attrs.evolve(policy, max_retries=max_retries)
        settings = attrs.evolve(
            self._settings,
            timeout=self._settings.timeout if timeout is None else timeout,
            retry=policy,
            reconcile=self._settings.reconcile if reconcile is None else reconcile,
            settle_delay=self._settings.settle_delay if settle_delay is None else settle_delay,
        )
        derived = object.__new__(type(self))
        derived._setup(settings, self._transport, owns_transport=False)
        return derived

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (unless it was passed in as ``session=``)."""
        if self._owns_transport:
            await self._transport.aclose()

    @property
    def closed(self) -> bool:
        return self._transport.closed

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Any:
        """Call any endpoint with the client's auth, retries, errors and redaction.

        For operations not wrapped yet (the logout path is unpublished, for example)::

            await wa.request("DELETE", "/instance/logout", params={"instanceName": name})

        Returns the decoded JSON, or the bytes of a non-JSON body. A POST is never resent after
        an ambiguous failure (it raises :class:`OutcomeUnknownError`).
        """
        call = Call(
            f"request {method.upper()} {path}",
            method.upper(),
            "/" + path.lstrip("/"),
            params=dict(params) if params else None,
            json=json,
            accept="*/*",
        )

        def read(raw: RawResponse) -> Any:
            if raw.content_type == "application/json" or raw.content_type.endswith("+json"):
                return _convert.json_body(raw)
            return raw.body

        return await self._execute(call, read, timeout=timeout, max_retries=max_retries)

    async def _execute(
        self,
        call: Call,
        decode: Callable[[RawResponse], T],
        *,
        timeout: float | None,
        max_retries: int | None,
        reconcile: Reconciler[T] | None = None,
        gone_after_ambiguous: Callable[[], T] | None = None,
    ) -> T:
        """Run ``call`` under the retry policy and decode its success response.

        For a non-idempotent call, an ambiguous failure (or a 2xx that does not decode) goes to
        ``reconcile``; without one it raises OutcomeUnknownError and is never resent.
        ``gone_after_ambiguous`` turns a 404 that follows an ambiguous attempt into success
        (the earlier attempt did it: a delete).
        """
        settings = self._settings
        seconds = settings.timeout if timeout is None else timeout
        policy = settings.retry
        if max_retries is not None and max_retries != policy.max_retries:
            policy = attrs.evolve(policy, max_retries=max_retries)
        # Wall clock: reconciliation compares it with the server's createdAt.
        started_wall = time.time()
        ambiguous_before = False

        async def attempt() -> T:
            nonlocal ambiguous_before
            try:
                return decode(await self._transport.send(call, seconds))
            except NotFoundError as exc:
                earlier_lost = ambiguous_before or exc.resent_after_loss
                if earlier_lost and gone_after_ambiguous is not None:
                    return gone_after_ambiguous()
                raise
            except WachatError as exc:
                processed = isinstance(exc, ResponseValidationError)
                ambiguous = processed or exc.failure is FailureClass.AMBIGUOUS
                ambiguous_before = ambiguous_before or ambiguous
                if call.idempotent or not ambiguous:
                    raise
                if reconcile is None:
                    raise OutcomeUnknownError(
                        f"{call.operation} may or may not have taken effect ({exc}); it was not "
                        "resent, because that could duplicate it.",
                        request=call,
                        cause=exc,
                    ) from exc
                found = await reconcile(exc, started_wall, processed)
                if found is not None:
                    return found
                raise mark_resend_safe(exc) from None

        started_monotonic = time.monotonic()  # the retry budget's clock
        try:
            return await attempt()
        except WachatError as failure:
            return await retry_after_failure(call, attempt, policy, failure, started_monotonic)
