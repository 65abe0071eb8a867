"""Operations on instances: create, QR codes, state, list, delete, wait, create_many."""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import os
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
)
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import attrs

from . import _convert
from . import _validate as check
from ._http import JSON, PNG, Call, RawResponse
from .errors import (
    ConflictError,
    InvalidRequestError,
    OutcomeUnknownError,
    ResponseValidationError,
    UnreadableOutcomeError,
    WachatError,
    WaitTimeoutError,
)
from .models import (
    CreatedInstance,
    CreateSpec,
    Instance,
    InstanceInfo,
    InstanceState,
    Integration,
    QrCode,
    QrImage,
)
from .qr import PNG_SIGNATURE

if TYPE_CHECKING:
    from .bulk import ProvisionProgress, ProvisionResult
    from .client import AsyncWachat

T = TypeVar("T")

#: Slack when comparing the server's ``createdAt`` with when an attempt began: the skew estimate
#: from the ``Date`` header has one-second resolution, and requests take time.
_CLOCK_SLACK = 2.0

QrCallback = Callable[[QrCode], Awaitable[None] | None]


class AsyncInstances:
    """``wa.instances``: everything about WhatsApp instances.

    ``name`` parameters are API instance names (``created.instance.api_instance_name``, like
    ``t1_mq9r2jov_jakarta_store``), except in ``create`` where you choose a friendly name.
    """

    def __init__(self, client: AsyncWachat) -> None:
        self._client = client

    # -- create ---------------------------------------------------------------------------

    async def create(
        self,
        instance_name: str,
        *,
        number: str | None = None,
        integration: Integration | str | None = None,
        reject_calls: bool | None = None,
        ignore_groups: bool | None = None,
        always_online: bool | None = None,
        read_messages: bool | None = None,
        read_status: bool | None = None,
        meta_token: str | None = None,
        meta_business_id: str | None = None,
        meta_phone_number_id: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> CreatedInstance:
        """Create an instance; for WHATSAPP-BAILEYS the result carries its first QR code.

        Only the fields you pass are sent. Creation is not idempotent: when a response is lost,
        the client looks for the instance (``GET /instance/list``) instead of resending blindly,
        and raises :class:`~wachat_async.errors.OutcomeUnknownError` if it cannot tell.
        """
        friendly, body = _create_body(
            instance_name,
            number=number,
            integration=integration,
            reject_calls=reject_calls,
            ignore_groups=ignore_groups,
            always_online=always_online,
            read_messages=read_messages,
            read_status=read_status,
            meta_token=meta_token,
            meta_business_id=meta_business_id,
            meta_phone_number_id=meta_phone_number_id,
        )
        return await self._create(friendly, body, timeout=timeout, max_retries=max_retries)

    def _create(
        self,
        friendly: str,
        body: dict[str, Any],
        *,
        timeout: float | None,
        max_retries: int | None,
    ) -> Coroutine[Any, Any, CreatedInstance]:
        """Send a checked create payload (``create`` and the bulk pipeline both end here).

        Returns the executor's coroutine as is: one coroutine frame less on the hot path."""
        call = Call("instances.create", "POST", "/instance/create", json=body)
        return self._client._execute(
            call,
            _decode_created,
            timeout=timeout,
            max_retries=max_retries,
            reconcile=self._reconciler(call, friendly, self._created_from_info),
        )

    async def create_qr_image(
        self,
        instance_name: str,
        *,
        number: str | None = None,
        integration: Integration | str | None = None,
        reject_calls: bool | None = None,
        ignore_groups: bool | None = None,
        always_online: bool | None = None,
        read_messages: bool | None = None,
        read_status: bool | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> QrImage:
        """Create an instance and get its QR straight as PNG bytes (``?response=image``)."""
        friendly, body = _create_body(
            instance_name,
            number=number,
            integration=integration,
            reject_calls=reject_calls,
            ignore_groups=ignore_groups,
            always_online=always_online,
            read_messages=read_messages,
            read_status=read_status,
        )
        if body.get("integration") == Integration.WHATSAPP_BUSINESS.value:
            raise InvalidRequestError("WHATSAPP-BUSINESS instances have no QR code; use create()")
        call = Call(
            "instances.create_qr_image",
            "POST",
            "/instance/create",
            params={"response": "image"},
            json=body,
            accept=PNG,
        )
        return await self._client._execute(
            call,
            _decode_qr_image,
            timeout=timeout,
            max_retries=max_retries,
            reconcile=self._reconciler(call, friendly, self._qr_image_from_info),
        )

    async def create_many(
        self,
        specs: Iterable[CreateSpec | Mapping[str, Any]]
        | AsyncIterable[CreateSpec | Mapping[str, Any]],
        *,
        concurrency: int = 8,
        rate_limit: float | None = None,
        journal: str | os.PathLike[str] | None = None,
        on_progress: Callable[[ProvisionProgress], None] | None = None,
    ) -> AsyncIterator[ProvisionResult]:
        """Create many instances, streaming a :class:`~wachat_async.bulk.ProvisionResult` each.

        Specs are read lazily, at most ``concurrency`` are in flight, ``rate_limit`` caps
        creates per second. With ``journal`` (a file path) every spec is recorded before it is
        sent and when its outcome is known, so a re-run skips what is done and never creates an
        instance twice. Results arrive in completion order.
        """
        from .bulk import provision

        async for result in provision(
            self,
            specs,
            concurrency=concurrency,
            rate_limit=rate_limit,
            journal=journal,
            on_progress=on_progress,
        ):
            yield result

    # -- reconciliation -------------------------------------------------------------------

    def _reconciler(
        self, call: Call, friendly: str, build: Callable[[InstanceInfo], Awaitable[T]]
    ) -> Callable[[WachatError, float, bool], Awaitable[T | None]]:
        async def reconcile(error: WachatError, started: float, processed: bool) -> T | None:
            settings = self._client.settings
            try:
                if not settings.reconcile:
                    raise OutcomeUnknownError(
                        f"{call.operation} {friendly!r} may or may not have happened ({error}); "
                        "reconciliation is off, so it was not resent.",
                        request=call,
                        cause=error,
                    ) from error
                # A 2xx means nothing is still in flight: no need to wait for it to settle.
                settle = 0.0 if processed else settings.settle_delay
                found = await self._find_created(
                    friendly,
                    since=started,
                    settle_until=time.time() + settle,
                    call=call,
                    cause=error,
                )
                if found is not None:
                    return await build(found)
                if not processed:
                    return None  # nothing happened: safe to resend
                raise OutcomeUnknownError(
                    f"{call.operation} {friendly!r}: no such instance is listed.",
                    request=call,
                    cause=error,
                )
            except OutcomeUnknownError as unknown:
                if processed and isinstance(error, ResponseValidationError):
                    raise UnreadableOutcomeError(
                        f"Wachat answered {call.operation} {friendly!r} with success, but the "
                        f"answer could not be read ({error}) nor the instance identified "
                        f"({unknown}); it was not resent.",
                        field=error.field,
                        body=error.body,
                        status_code=error.status_code,
                        request=call,
                        candidates=unknown.candidates,
                        cause=error,
                    ) from unknown
                raise

        return reconcile

    async def _find_created(
        self,
        friendly: str,
        *,
        since: float,
        settle_until: float,
        call: Call,
        cause: BaseException | None = None,
    ) -> InstanceInfo | None:
        """The one instance named ``friendly`` created since ``since`` (wall-clock seconds).

        Looks again after ``settle_until`` when nothing is there yet, since a request that timed
        out on the client may still be processed. Raises OutcomeUnknownError when several match
        or when the list cannot be read.
        """
        try:
            candidates = await self._appeared_since(friendly, since)
            if not candidates and (wait := settle_until - time.time()) > 0:
                await asyncio.sleep(wait)
                candidates = await self._appeared_since(friendly, since)
        except WachatError as exc:
            raise OutcomeUnknownError(
                f"{call.operation} {friendly!r} may or may not have happened, and listing "
                f"instances to find out failed too ({exc}).",
                request=call,
                cause=cause or exc,
            ) from exc
        if len(candidates) > 1:
            raise OutcomeUnknownError(
                f"{call.operation} {friendly!r}: {len(candidates)} instances with that name "
                "appeared; not guessing which one is yours.",
                request=call,
                candidates=candidates,
                cause=cause,
            )
        return candidates[0] if candidates else None

    async def _appeared_since(self, friendly: str, since: float) -> list[InstanceInfo]:
        call = Call("instances.list", "GET", "/instance/list")
        infos, server_skew = await self._client._execute(
            call, _decode_list_with_skew, timeout=None, max_retries=None
        )
        threshold = since + server_skew - _CLOCK_SLACK
        return [
            info
            for info in infos
            if friendly in (info.instance_name, info.display_name)
            and (info.created_at is None or _epoch(info.created_at) >= threshold)
        ]

    async def _created_from_info(self, info: InstanceInfo) -> CreatedInstance:
        qrcode: QrCode | None = None
        qr_error: str | None = None
        if info.integration is not Integration.WHATSAPP_BUSINESS:
            try:
                qrcode = await self.qr(info.api_instance_name)
            except WachatError as exc:
                qr_error = f"QR could not be fetched after reconciliation: {exc}"
        instance = Instance(
            api_instance_name=info.api_instance_name,
            id=info.id,
            instance_name=info.instance_name,
            display_name=info.display_name,
            internal_name=info.internal_name,
            number=info.number,
            integration=info.integration,
        )
        return CreatedInstance(
            instance=instance, qrcode=qrcode, qr_error=qr_error, reconciled=True, raw=info.raw
        )

    async def _qr_image_from_info(self, info: InstanceInfo) -> QrImage:
        png = await self.qr_image(info.api_instance_name)
        return QrImage(
            png=png, instance_name=info.instance_name, api_instance_name=info.api_instance_name
        )

    # -- QR -------------------------------------------------------------------------------

    async def qr(
        self, name: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> QrCode:
        """A fresh QR code for an instance that is waiting to be scanned."""
        call = Call(
            "instances.qr", "GET", "/instance/qr", params={"instanceName": check.api_name(name)}
        )
        return await self._client._execute(
            call, _decode_qr, timeout=timeout, max_retries=max_retries
        )

    async def qr_image(
        self, name: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> bytes:
        """The current QR code as PNG bytes."""
        call = Call(
            "instances.qr_image",
            "GET",
            "/instance/qr/image",
            params={"instanceName": check.api_name(name)},
            accept=PNG,
        )
        return await self._client._execute(
            call, _decode_png, timeout=timeout, max_retries=max_retries
        )

    def qr_image_url(self, name: str, *, with_api_key: bool = False) -> str:
        """URL of the QR image, for an ``<img>``. The API key is added only when you ask:
        such a URL is a secret, so do not log it or put it on a public page."""
        return self._url("/instance/qr/image", name, with_api_key)

    def qr_live_url(self, name: str, *, with_api_key: bool = False) -> str:
        """URL of the self-refreshing QR page, for an ``<iframe>`` (420x460). Same caveat."""
        return self._url("/instance/qr/live", name, with_api_key)

    def _url(self, path: str, name: str, with_api_key: bool) -> str:
        query = {"instanceName": check.api_name(name)}
        if with_api_key:
            query["apiKey"] = self._client.settings.api_key
        return f"{self._client.settings.base_url}{path}?{urlencode(query)}"

    # -- state, list, delete ----------------------------------------------------------------

    async def state(
        self, name: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> InstanceState:
        call = Call(
            "instances.state",
            "GET",
            "/instance/state",
            params={"instanceName": check.api_name(name)},
        )
        return await self._client._execute(
            call, _decode_state, timeout=timeout, max_retries=max_retries
        )

    async def list(
        self, *, timeout: float | None = None, max_retries: int | None = None
    ) -> list[InstanceInfo]:
        call = Call("instances.list", "GET", "/instance/list")
        infos, _ = await self._client._execute(
            call, _decode_list_with_skew, timeout=timeout, max_retries=max_retries
        )
        return infos

    async def delete(
        self, name: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> None:
        """Delete an instance. A connected instance must be logged out first (409)."""
        api_name = check.api_name(name)
        call = Call(
            "instances.delete", "DELETE", "/instance/delete", params={"instanceName": api_name}
        )
        try:
            await self._client._execute(
                call,
                _ignore_body,
                timeout=timeout,
                max_retries=max_retries,
                gone_after_ambiguous=lambda: None,
            )
        except ConflictError as exc:
            exc.message = (
                f"{exc.message} - instance {api_name!r} is still connected; log it out first "
                "(the logout path is not published: see AsyncWachat.request)"
            )
            exc.args = (str(exc),)
            raise

    async def profile_picture(
        self, name: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> bytes:
        """The profile picture of a connected instance, as image bytes."""
        call = Call(
            "instances.profile_picture",
            "GET",
            "/instance/profile-picture",
            params={"instanceName": check.api_name(name)},
            accept="*/*",
        )
        return await self._client._execute(
            call, _decode_image, timeout=timeout, max_retries=max_retries
        )

    # -- waiting for the scan ----------------------------------------------------------------

    async def wait_until_connected(
        self,
        name: str,
        *,
        timeout: float = 120.0,
        poll_interval: float = 2.0,
        on_qr: QrCallback | None = None,
    ) -> InstanceState:
        """Poll until the instance is connected (its QR was scanned), and return its state.

        While it is not, each QR code that differs from the last one seen (they rotate and
        expire) is handed to ``on_qr``, a plain or async callable. Raises
        :class:`~wachat_async.errors.WaitTimeoutError` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        last_code: str | None = None
        state: InstanceState | None = None
        while True:
            state = await self.state(name)
            if state.is_connected:
                return state
            if on_qr is not None:
                try:
                    qrcode = await self.qr(name)
                except (ResponseValidationError, ConflictError):
                    qrcode = None  # connected between the two calls, or no QR right now
                if qrcode is not None and (qrcode.code or qrcode.base64) != last_code:
                    last_code = qrcode.code or qrcode.base64
                    outcome = on_qr(qrcode)
                    if inspect.isawaitable(outcome):
                        await outcome
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(
                    f"Instance {name!r} was not connected within {timeout:g} s "
                    f"(last state: {state.state.value})",
                    last_state=state,
                )
            await asyncio.sleep(min(poll_interval, remaining))


def _create_body(
    instance_name: str,
    *,
    number: Any = None,
    integration: Any = None,
    reject_calls: Any = None,
    ignore_groups: Any = None,
    always_online: Any = None,
    read_messages: Any = None,
    read_status: Any = None,
    meta_token: Any = None,
    meta_business_id: Any = None,
    meta_phone_number_id: Any = None,
) -> tuple[str, dict[str, Any]]:
    """The create payload with only the given fields, checked. Returns (friendly name, body)."""
    friendly = check.instance_name(instance_name)
    body: dict[str, Any] = {"instanceName": friendly}
    if number is not None:
        body["number"] = check.number(number)
    if integration is not None:
        body["integration"] = check.choice("integration", integration, Integration).value
    for key, value in (
        ("rejectCalls", reject_calls),
        ("ignoreGroups", ignore_groups),
        ("alwaysOnline", always_online),
        ("readMessages", read_messages),
        ("readStatus", read_status),
    ):
        if value is not None:
            body[key] = check.flag(key, value)
    meta = {
        "metaToken": meta_token,
        "metaBusinessId": meta_business_id,
        "metaPhoneNumberId": meta_phone_number_id,
    }
    for key, value in meta.items():
        if value is not None:
            body[key] = check.text(key, value)
    if body.get("integration") == Integration.WHATSAPP_BUSINESS.value:
        missing = [key for key, value in meta.items() if value is None]
        if missing:
            raise InvalidRequestError(
                "WHATSAPP-BUSINESS instances need meta_token, meta_business_id and "
                f"meta_phone_number_id; missing: {', '.join(missing)}"
            )
    return friendly, body


def create_body(spec: CreateSpec) -> tuple[str, dict[str, Any]]:
    """The checked create payload for a spec (used by the bulk pipeline to validate early)."""
    return _create_body(**spec.as_kwargs())


def _decode_created(raw: RawResponse) -> CreatedInstance:
    return _convert.decode(raw, CreatedInstance)


def _decode_qr_image(raw: RawResponse) -> QrImage:
    png = _decode_png(raw)
    api_name = raw.headers.get("X-Api-Instance-Name")
    if not api_name:
        raise ResponseValidationError(
            "QR image response has no X-Api-Instance-Name header",
            field="X-Api-Instance-Name",
            body=f"<{len(png)} bytes of PNG>",
            status_code=raw.status,
        )
    return QrImage(
        png=png, instance_name=raw.headers.get("X-Instance-Name"), api_instance_name=api_name
    )


def _decode_png(raw: RawResponse) -> bytes:
    if raw.content_type != PNG or not raw.body.startswith(PNG_SIGNATURE):
        raise ResponseValidationError(
            f"Expected a PNG image, got {raw.content_type or 'no content type'!r} "
            f"({len(raw.body)} bytes)",
            field=None,
            body=raw.text()[:200] if raw.content_type == JSON else "",
            status_code=raw.status,
        )
    return raw.body


def _decode_image(raw: RawResponse) -> bytes:
    if not raw.content_type.startswith("image/") or not raw.body:
        raise ResponseValidationError(
            f"Expected an image, got {raw.content_type or 'no content type'!r}",
            field=None,
            body=raw.text()[:200] if raw.content_type == JSON else "",
            status_code=raw.status,
        )
    return raw.body


_QR_KEYS = ("base64", "code", "pairingCode")


def _decode_qr(raw: RawResponse) -> QrCode:
    """The QR response is undocumented: accept the QR object bare or under a few wrappers."""
    data = _convert.json_object(raw)
    queue: list[tuple[str, Any]] = [("", data)]
    for _ in range(3):  # breadth-first, three levels deep at most
        found = [
            (path, node)
            for path, node in queue
            if isinstance(node, dict) and any(k in node for k in _QR_KEYS)
        ]
        if found:
            path, node = found[0]
            return _convert.structure(node, QrCode, body=raw.body, prefix=path)
        queue = [
            (f"{path}.{key}".lstrip("."), value)
            for path, node in queue
            if isinstance(node, dict)
            for key, value in node.items()
            if isinstance(value, dict)
        ]
    raise ResponseValidationError(
        "No QR code in the response (looked for base64, code or pairingCode)",
        field="qrcode",
        body=raw.text()[:2000],
        status_code=raw.status,
    )


def _decode_state(raw: RawResponse) -> InstanceState:
    data = _convert.json_object(raw)
    instance = data.get("instance")
    nested = data.get("data")
    nested = nested.get("instance") if isinstance(nested, dict) else None
    flat: dict[str, Any] = dict(instance) if isinstance(instance, dict) else {}
    if isinstance(nested, dict):
        # data.instance.instanceName is the API name there; instance.instanceName the friendly one.
        if flat.get("apiInstanceName") is None and flat.get("internalName") is None:
            flat["apiInstanceName"] = nested.get("instanceName")
        if flat.get("state") is None:
            flat["state"] = nested.get("state")
    state = _convert.structure(flat, InstanceState, body=raw.body, prefix="instance")
    return attrs.evolve(state, raw=data)  # the whole body, not the flattened view


def _decode_list_with_skew(raw: RawResponse) -> tuple[list[InstanceInfo], float]:
    data = _convert.json_object(raw)
    if "instances" not in data:
        raise ResponseValidationError(
            "Response has no 'instances' field",
            field="instances",
            body=raw.text()[:2000],
            status_code=raw.status,
        )
    infos = _convert.structure(
        data["instances"], list[InstanceInfo], body=raw.body, prefix="instances"
    )
    return infos, _server_skew(raw)


def _server_skew(raw: RawResponse) -> float:
    """Server clock minus ours, from the ``Date`` header (0 when absent)."""
    date = raw.headers.get("Date")
    if not date:
        return 0.0
    try:
        return email.utils.parsedate_to_datetime(date).timestamp() - time.time()
    except (TypeError, ValueError):
        return 0.0


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _ignore_body(raw: RawResponse) -> None:
    return None
