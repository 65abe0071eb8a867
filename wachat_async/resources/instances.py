"""``wa.instances``: create instances, get their QR codes, watch them connect, list, delete."""

from __future__ import annotations

import asyncio
import builtins
import inspect
import os
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
)
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

import attrs

from .. import _decode, _encode
from .. import _validate as check
from .._executor import NOT_DONE, Doubt, Executor, Found, NotDone
from .._reconcile import (
    CREATE_INSTANCE,
    DELETE_INSTANCE,
    LIST_INSTANCES,
    Reconciler,
    already_gone,
)
from .._request import ANY, PNG, Call
from .._signatures import arguments
from ..bulk.dedupe import DuplicateGroup, dedupe, journal_choices
from ..bulk.journal import Journal
from ..bulk.provision import ProvisionProgress, ProvisionResult, provision
from ..errors import (
    ConflictError,
    InvalidRequestError,
    ResponseValidationError,
    WachatError,
    WaitTimeoutError,
)
from ..models import (
    CreatedInstance,
    CreateSpec,
    Instance,
    InstanceInfo,
    InstanceState,
    Integration,
    QrCode,
    QrImage,
)

R = TypeVar("R")

QrCallback = Callable[[QrCode], Awaitable[None] | None]

_CREATE_QR_IMAGE = Call("instances.create_qr_image", "POST", "/instance/create", accept=PNG)
_AS_IMAGE = {"response": "image"}
_QR = Call("instances.qr", "GET", "/instance/qr")
_QR_IMAGE = Call("instances.qr_image", "GET", "/instance/qr/image", accept=PNG)
_STATE = Call("instances.state", "GET", "/instance/state")
_PROFILE_PICTURE = Call("instances.profile_picture", "GET", "/instance/profile-picture", accept=ANY)

#: The shortest pause between two polls of ``wait_until_connected``.
MIN_POLL_INTERVAL = 0.1


@attrs.frozen(slots=False)
class _CreateCall(CreateSpec):
    """The parameters of ``create`` and ``create_qr_image``: the create fields, then the
    per-call options every operation takes."""

    timeout: float | None = attrs.field(default=None, kw_only=True)
    max_retries: int | None = attrs.field(default=None, kw_only=True)


class _Reconciliation(Generic[R]):
    """How a doubtful create is settled for one kind of result: the reconciler finds the
    instance, ``build`` turns it into the result; after a resend, the reconciler sweeps away the
    duplicate a late first attempt may leave, and ``swept`` records what it deleted."""

    def __init__(
        self,
        reconciler: Reconciler,
        build: Callable[[InstanceInfo], Awaitable[R]],
        api_name: Callable[[R], str],
        swept: Callable[[R, tuple[str, ...]], R],
    ) -> None:
        self._reconciler = reconciler
        self._build = build
        self._api_name = api_name
        self._swept = swept

    async def settle(self, doubt: Doubt) -> Found[R] | NotDone:
        found = await self._reconciler.settle(doubt)
        return NOT_DONE if found is None else Found(await self._build(found))

    async def resent(self, doubt: Doubt, result: R) -> R:
        deleted = await self._reconciler.sweep(
            doubt.request.body["instanceName"], keep=self._api_name(result), since=doubt.started
        )
        return self._swept(result, deleted) if deleted else result


class Creator:
    """Creates instances exactly once. ``instances.create`` and bulk provisioning both use it:
    a create whose outcome is in doubt is reconciled, never blindly resent, and when it was
    resent, the duplicate a late first attempt may leave is swept away."""

    def __init__(self, executor: Executor, reconciler: Reconciler) -> None:
        self._executor = executor
        self._reconciler = reconciler
        self._created = _Reconciliation(
            reconciler,
            self.created_from,
            lambda created: created.instance.api_instance_name,
            lambda created, deleted: attrs.evolve(created, duplicates_deleted=deleted),
        )
        # A QrImage has no place to list what was deleted: the sweep's log says it.
        self._qr_image = _Reconciliation(
            reconciler,
            self._qr_image_from,
            lambda image: image.api_instance_name,
            lambda image, deleted: image,
        )

    def create(
        self, body: dict[str, Any], *, timeout: float | None = None, max_retries: int | None = None
    ) -> Coroutine[Any, Any, CreatedInstance]:
        """Send a checked create body (see :func:`~wachat_async._encode.create_body`)."""
        return self._executor.run(
            CREATE_INSTANCE,
            _decode.created,
            body=body,
            timeout=timeout,
            max_retries=max_retries,
            reconcile=self._created,
        )

    def create_qr_image(
        self, body: dict[str, Any], *, timeout: float | None, max_retries: int | None
    ) -> Coroutine[Any, Any, QrImage]:
        return self._executor.run(
            _CREATE_QR_IMAGE,
            _decode.qr_image,
            params=_AS_IMAGE,
            body=body,
            timeout=timeout,
            max_retries=max_retries,
            reconcile=self._qr_image,
        )

    async def recover(self, friendly: str, started_at: float) -> CreatedInstance | None:
        """The instance an interrupted earlier run created as ``friendly`` (its create began
        at ``started_at``), or None if it did not."""
        settings = self._executor.settings
        found = await self._reconciler.find(
            CREATE_INSTANCE,
            friendly,
            since=started_at,
            settle_until=started_at + settings.timeout + settings.settle_delay,
        )
        return None if found is None else await self.created_from(found)

    async def created_from(self, info: InstanceInfo) -> CreatedInstance:
        """A create's result rebuilt from the instance list (its QR code fetched afresh)."""
        qrcode: QrCode | None = None
        qr_error: str | None = None
        if info.integration is not Integration.WHATSAPP_BUSINESS:
            try:
                qrcode = await self._executor.run(
                    _QR, _decode.qr, params=_instance(info.api_instance_name)
                )
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

    async def _qr_image_from(self, info: InstanceInfo) -> QrImage:
        png = await self._executor.run(
            _QR_IMAGE, _decode.png, params=_instance(info.api_instance_name)
        )
        return QrImage(
            png=png, instance_name=info.instance_name, api_instance_name=info.api_instance_name
        )


class AsyncInstances:
    """``wa.instances``: everything about WhatsApp instances.

    ``name`` parameters are API instance names (``created.instance.api_instance_name``, like
    ``t1_mq9r2jov_jakarta_store``), except in ``create`` where you choose a friendly name.
    """

    def __init__(self, executor: Executor, reconciler: Reconciler) -> None:
        self._executor = executor
        self._creator = Creator(executor, reconciler)

    # -- create ---------------------------------------------------------------------------

    @arguments(_CreateCall)
    def create(self, args: _CreateCall) -> Coroutine[Any, Any, CreatedInstance]:
        """Create an instance; for WHATSAPP-BAILEYS the result carries its first QR code.

        Takes the fields of :class:`~wachat_async.CreateSpec`; only those given are sent.
        Creation is not idempotent: when an answer is lost, the client looks for the instance
        (``GET /instance/list``) instead of resending blindly, and raises
        :class:`~wachat_async.OutcomeUnknownError` if it cannot tell.
        """
        body = _encode.create_body(args)
        return self._creator.create(body, timeout=args.timeout, max_retries=args.max_retries)

    @arguments(_CreateCall)
    def create_qr_image(self, args: _CreateCall) -> Coroutine[Any, Any, QrImage]:
        """Create an instance and get its QR straight as PNG bytes (``?response=image``).

        Same fields and guarantees as :meth:`create`; WHATSAPP-BUSINESS instances have no QR.
        """
        body = _encode.create_body(args)
        if body.get("integration") == Integration.WHATSAPP_BUSINESS:
            raise InvalidRequestError("WHATSAPP-BUSINESS instances have no QR code; use create()")
        return self._creator.create_qr_image(
            body, timeout=args.timeout, max_retries=args.max_retries
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
    ) -> AsyncGenerator[ProvisionResult, None]:
        """Create many instances, streaming a :class:`~wachat_async.ProvisionResult` each.

        Specs (:class:`~wachat_async.CreateSpec`, or mappings of its fields) are read lazily;
        at most ``concurrency`` are in flight, ``rate_limit`` caps creates per second. A bad
        spec, or a friendly name repeated in the input, fails alone. With ``journal`` (a file
        path) every spec is recorded before it is sent and when its outcome is known, so a
        re-run skips what is done and never creates an instance twice; the journal is bound to
        this account and base URL, and one process at a time. Results arrive in completion
        order.
        """
        async for result in provision(
            self._creator,
            self._executor.settings,
            specs,
            concurrency=concurrency,
            rate_limit=rate_limit,
            journal=journal,
            on_progress=on_progress,
            instances=self,
        ):
            yield result

    # -- QR -------------------------------------------------------------------------------

    async def qr(
        self, name: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> QrCode:
        """A fresh QR code for an instance that is waiting to be scanned."""
        return await self._executor.run(
            _QR, _decode.qr, params=_instance(name), timeout=timeout, max_retries=max_retries
        )

    async def qr_image(
        self, name: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> bytes:
        """The current QR code as PNG bytes."""
        return await self._executor.run(
            _QR_IMAGE, _decode.png, params=_instance(name), timeout=timeout, max_retries=max_retries
        )

    def qr_image_url(self, name: str, *, with_api_key: bool = False) -> str:
        """URL of the QR image, for an ``<img>``. The API key is added only when you ask: such
        a URL is a secret, so do not log it or put it on a public page."""
        return self._url("/instance/qr/image", name, with_api_key)

    def qr_live_url(self, name: str, *, with_api_key: bool = False) -> str:
        """URL of the self-refreshing QR page, for an ``<iframe>`` (420x460). Same caveat."""
        return self._url("/instance/qr/live", name, with_api_key)

    def _url(self, path: str, name: str, with_api_key: bool) -> str:
        query = _instance(name)
        settings = self._executor.settings
        if check.flag("with_api_key", with_api_key):
            query["apiKey"] = settings.api_key
        return f"{settings.base_url}{path}?{urlencode(query)}"

    # -- state, list, delete ----------------------------------------------------------------

    async def state(
        self, name: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> InstanceState:
        """The connection state (``OPEN`` once scanned), with profile data when connected."""
        return await self._executor.run(
            _STATE, _decode.state, params=_instance(name), timeout=timeout, max_retries=max_retries
        )

    async def list(
        self, *, timeout: float | None = None, max_retries: int | None = None
    ) -> list[InstanceInfo]:
        """Every instance of the account."""
        infos, _ = await self._executor.run(
            LIST_INSTANCES, _decode.instances_and_clock, timeout=timeout, max_retries=max_retries
        )
        return infos

    async def delete(
        self, name: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> None:
        """Delete an instance. A connected instance must be logged out first (ConflictError)."""
        await self._executor.run(
            DELETE_INSTANCE,
            _decode.nothing,
            params=_instance(name),
            timeout=timeout,
            max_retries=max_retries,
            done_if_gone=already_gone,
        )

    async def profile_picture(
        self, name: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> bytes:
        """The profile picture of a connected instance, as image bytes."""
        return await self._executor.run(
            _PROFILE_PICTURE,
            _decode.image,
            params=_instance(name),
            timeout=timeout,
            max_retries=max_retries,
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
        expire) is handed to ``on_qr``, a plain or async callable. ``poll_interval`` is at
        least 0.1 s. Raises :class:`~wachat_async.WaitTimeoutError` after ``timeout`` seconds.
        """
        check.api_name("name", name)
        limit = check.seconds("timeout", timeout)
        pause = max(check.seconds("poll_interval", poll_interval), MIN_POLL_INTERVAL)
        if on_qr is not None and not callable(on_qr):
            raise InvalidRequestError(f"on_qr must be callable, got {type(on_qr).__name__}")
        deadline = time.monotonic() + limit
        last_code: str | None = None
        polls = 0
        while True:
            state = await self.state(name)
            polls += 1
            if state.is_connected:
                return state
            if on_qr is not None:
                try:
                    qrcode: QrCode | None = await self.qr(name)
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
                    f"Instance {name!r} was not connected within {limit:g} s "
                    f"(last state: {state.state.value}); scan its QR code with WhatsApp "
                    "(Settings > Linked devices)",
                    last_state=state,
                    attempts=polls,
                )
            await asyncio.sleep(min(pause, remaining))

    # -- duplicates ----------------------------------------------------------------------------

    async def dedupe(
        self, *, delete: bool = False, journal: str | os.PathLike[str] | Journal | None = None
    ) -> builtins.list[DuplicateGroup]:  # `list` here is the method above
        """Every friendly name held by more than one instance (a create that landed after it
        was resent), as a :class:`~wachat_async.DuplicateGroup` each: the one kept (the one
        ``journal``, a provisioning journal, recorded; else a connected one; else the oldest)
        and the others. With ``delete=True`` the others are deleted, except connected ones:
        those are left, and reported in ``group.left``."""
        keep = await journal_choices(journal, self._executor.settings)
        return await dedupe(self, delete=delete, keep=keep)


def _instance(name: str) -> dict[str, str]:
    return {"instanceName": check.api_name("name", name)}
