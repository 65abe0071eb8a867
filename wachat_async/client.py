"""AsyncWachat: one client, one connection pool, every operation."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp
import attrs

from . import _decode
from . import _validate as check
from ._config import OptionChanges, Settings, options_of
from ._executor import Executor
from ._help import Group, with_group_index
from ._reconcile import Reconciler
from ._request import ANY, Call
from ._signatures import arguments
from ._transport import Transport
from .errors import InvalidRequestError
from .resources.instances import AsyncInstances
from .resources.messages import AsyncMessages, Sender
from .resources.webhooks import AsyncWebhooks


def _session(
    instance: Any, attribute: attrs.Attribute[Any], value: aiohttp.ClientSession | None
) -> None:
    if value is not None and not isinstance(value, aiohttp.ClientSession):
        raise InvalidRequestError(
            f"session must be an aiohttp.ClientSession, got {type(value).__name__}"
        )


@attrs.frozen
class _AsyncClientArguments(Settings):
    """AsyncWachat's parameters: every client option, and a session of your own to share."""

    #: Your own aiohttp session to share; the client never closes it.
    session: aiohttp.ClientSession | None = attrs.field(
        default=None, kw_only=True, validator=_session, eq=False, repr=False
    )


class AsyncWachat:
    """Async client for the Wachat Enterprise API.

    ::

        async with AsyncWachat() as wa:               # key from WACHAT_API_KEY
            created = await wa.instances.create("jakarta_store", number="628123456789")
            created.qrcode.save("qr.png")

    One client holds one connection pool; share it across tasks. Pass ``session=`` to reuse
    your own :class:`aiohttp.ClientSession` (the client then never closes it). Every option
    is checked here, before anything is sent.
    """

    # The groups are built in __init__; declared here so help(AsyncWachat) shows them.
    instances = Group(AsyncInstances)
    messages = Group(AsyncMessages)
    webhooks = Group(AsyncWebhooks)

    @arguments(_AsyncClientArguments)
    def __init__(self, options: _AsyncClientArguments) -> None:
        """Build a client; see :class:`~wachat_async._config.Settings` for each option."""
        settings = Settings(options.api_key, **options_of(options))
        self._connect(settings, Transport(settings, options.session), owns_pool=True)

    def _connect(self, settings: Settings, transport: Transport, *, owns_pool: bool) -> None:
        self._settings = settings
        self._transport = transport
        self._owns_pool = owns_pool
        executor = Executor(transport, settings)
        self._executor = executor
        #: Instances: create, QR codes, state, list, delete, wait, create_many.
        self.instances = AsyncInstances(executor, Reconciler(executor))
        #: Messages: text, media, location, list, buttons, and broadcasts.
        self.messages = AsyncMessages(Sender(executor, self.instances.state))
        #: Webhooks of the account: list and upsert.
        self.webhooks = AsyncWebhooks(executor)

    @property
    def settings(self) -> Settings:
        """The options in force (the key is not in its repr)."""
        return self._settings

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._settings.base_url!r}, api_key='***')"

    @arguments(OptionChanges)
    def with_options(self, changes: OptionChanges) -> Self:
        """A client with other defaults (timeouts, retries, reconciliation, size caps) that
        shares this one's connection pool. Closing it closes nothing; close the original."""
        settings = changes.apply(self._settings)
        derived = object.__new__(type(self))  # no pool of its own to build and throw away
        derived._connect(settings, Transport(settings, shares=self._transport), owns_pool=False)
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
        """Close the connection pool (unless it was passed in as ``session=``). Idempotent."""
        if self._owns_pool:
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
        an ambiguous failure (it raises :class:`~wachat_async.OutcomeUnknownError`).
        """
        verb = check.text("method", method).upper()
        route = "/" + check.text("path", path).lstrip("/")
        query = None
        if params:
            query = {
                check.text("params key", k): check.text(f"params[{k!r}]", v, allow_blank=True)
                for k, v in params.items()
            }
        body = None if json is None else check.json_value("json", json)
        call = Call(f"request {verb} {route}", verb, route, accept=ANY)
        return await self._executor.run(
            call,
            _decode.any_body,
            params=query,
            body=body,
            timeout=timeout,
            max_retries=max_retries,
        )


with_group_index(AsyncWachat)
