"""``wa.webhooks``: list, create and update the webhooks of your account.

Receiving deliveries (verifying and parsing them, serving them over aiohttp) is
:mod:`wachat_async.webhooks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _decode
from .. import _validate as check
from .._executor import Executor
from .._request import Call
from ..errors import InvalidRequestError
from ..models import Webhook, WebhookEventType

_LIST = Call("webhooks.list", "GET", "/webhooks")
_CREATE = Call("webhooks.create", "POST", "/webhooks")
_UPDATE = Call("webhooks.update", "POST", "/webhooks", idempotent=True)


class AsyncWebhooks:
    """``wa.webhooks``: list, create and update the webhooks of your account."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def list(
        self,
        instance_name: str | None = None,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> list[Webhook]:
        """Webhooks of the account, or of one instance (secrets come back masked)."""
        params = (
            None
            if instance_name is None
            else {"instanceName": check.api_name("instance_name", instance_name)}
        )
        return await self._executor.run(
            _LIST, _decode.webhooks, params=params, timeout=timeout, max_retries=max_retries
        )

    async def upsert(
        self,
        url: str,
        *,
        id: int | None = None,
        name: str | None = None,
        events: Sequence[WebhookEventType | str] | None = None,
        instance_name: str | None = None,
        enabled: bool | None = None,
        secret: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Webhook:
        """Create a webhook, or update webhook ``id``. ``url`` must be https (plain http is
        accepted only for a loopback URL while the client itself talks to a loopback sandbox).
        Omit ``instance_name`` to receive events of every instance; omit ``secret`` to have one
        generated. Creating (no ``id``) is never resent after an ambiguous failure; an update
        names its target, so resending it is harmless."""
        talks_to_loopback = self._executor.settings.talks_to_loopback
        body: dict[str, Any] = {"url": check.url("url", url, allow_loopback_http=talks_to_loopback)}
        if id is not None:
            if not isinstance(id, int) or isinstance(id, bool):
                raise InvalidRequestError(f"id must be an integer, got {id!r}")
            body["id"] = id
        if name is not None:
            body["name"] = check.text("name", name)
        if events is not None:
            body["events"] = [
                check.choice(f"events[{i}]", event, WebhookEventType).value
                for i, event in enumerate(check.non_empty("events", events))
            ]
        if instance_name is not None:
            body["instanceName"] = check.api_name("instance_name", instance_name)
        if enabled is not None:
            body["enabled"] = check.flag("enabled", enabled)
        if secret is not None:
            body["secret"] = check.text("secret", secret)
        # An update names its target, so resending it is harmless; a create is not.
        call = _UPDATE if id is not None else _CREATE
        return await self._executor.run(
            call, _decode.webhook, body=body, timeout=timeout, max_retries=max_retries
        )
