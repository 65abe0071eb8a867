"""POST /instance/create over real HTTP: every field, both answers, each documented status."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import aiohttp
import pytest
import zxingcpp
from PIL import Image

from tests.conftest import KEY
from wachat_async import (
    AsyncWachat,
    AuthenticationError,
    BadRequestError,
    CreatedInstance,
    Integration,
    InvalidRequestError,
    PermissionDeniedError,
    QrImage,
    UpstreamError,
    WachatError,
)
from wachat_async.qr import PNG_SIGNATURE
from wachat_async.testing import FakeWachat, Fault


def decode_qr(png: bytes) -> str:
    """What a phone would read from the PNG (Pillow + zxing-cpp, independent of segno)."""
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert results, "no QR code found in the PNG"
    text: str = results[0].text
    return text


async def test_create_returns_typed_instance_and_scannable_qr(
    wa: AsyncWachat, server: FakeWachat, tmp_path: Path
) -> None:
    created = await wa.instances.create("jakarta_store", number="628123456789")

    assert isinstance(created, CreatedInstance)
    assert created.success is True
    assert created.qr_error is None
    inst = created.instance
    held = server.instance(inst.api_instance_name)
    assert inst.id == held.id
    assert inst.instance_name == inst.display_name == "jakarta_store"
    assert inst.api_instance_name == inst.internal_name == held.api_name
    assert inst.api_instance_name.endswith("_jakarta_store")
    assert inst.number == "628123456789"
    assert inst.integration is Integration.WHATSAPP_BAILEYS
    qr = created.qrcode
    assert qr is not None
    assert qr.count == 1
    assert qr.pairing_code is not None
    assert len(qr.pairing_code) == 8
    assert qr.image_url == f"{server.base_url}/instance/qr/image?instanceName={held.api_name}"
    png = qr.png_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert decode_qr(png) == qr.code == held.qr_code
    qr.save(tmp_path / "qr.png")
    assert (tmp_path / "qr.png").read_bytes() == png


async def test_create_sends_every_field_given_and_nothing_else(
    wa: AsyncWachat, server: FakeWachat
) -> None:
    await wa.instances.create(
        "all_fields",
        number="+62 812-3456-789",
        integration="WHATSAPP-BAILEYS",
        reject_calls=True,
        ignore_groups=False,
        always_online=True,
        read_messages=False,
        read_status=True,
    )
    await wa.instances.create("only_name")

    sent = [r for r in server.requests if r.path == "/instance/create"]
    assert sent[0].json == {
        "instanceName": "all_fields",
        "number": "628123456789",
        "integration": "WHATSAPP-BAILEYS",
        "rejectCalls": True,
        "ignoreGroups": False,
        "alwaysOnline": True,
        "readMessages": False,
        "readStatus": True,
    }
    assert sent[1].json == {"instanceName": "only_name"}
    assert sent[0].content_type == "application/json"


async def test_create_business_instance_with_meta_fields(
    wa: AsyncWachat, server: FakeWachat
) -> None:
    created = await wa.instances.create(
        "cloud_store",
        integration=Integration.WHATSAPP_BUSINESS,
        meta_token="EAAG-token",
        meta_business_id="1234",
        meta_phone_number_id="5678",
    )
    assert created.qrcode is None
    assert created.instance.integration is Integration.WHATSAPP_BUSINESS
    body = server.requests[-1].json
    assert body["metaToken"] == "EAAG-token"
    assert body["metaBusinessId"] == "1234"
    assert body["metaPhoneNumberId"] == "5678"


async def test_created_but_qr_not_fetched_is_success(wa: AsyncWachat, server: FakeWachat) -> None:
    server.fail_qr()
    created = await wa.instances.create("no_qr_yet")
    assert created.success is True
    assert created.qrcode is None
    assert created.qr_error
    assert "could not be fetched" in created.qr_error
    assert server.count_instances("no_qr_yet") == 1


async def test_create_qr_image_returns_png_and_both_names(
    wa: AsyncWachat, server: FakeWachat, tmp_path: Path
) -> None:
    image = await wa.instances.create_qr_image("store_2", number="6281112223")

    assert isinstance(image, QrImage)
    held = server.instance(image.api_instance_name)
    assert image.instance_name == "store_2"
    assert image.png == held.qr_png
    assert decode_qr(image.png) == held.qr_code
    request = server.requests[-1]
    assert request.query == {"response": "image"}
    image.save(tmp_path / "store_2.png")
    assert (tmp_path / "store_2.png").read_bytes().startswith(PNG_SIGNATURE)


async def test_accept_headers(server: FakeWachat) -> None:
    seen: list[str] = []
    trace = aiohttp.TraceConfig()

    async def on_start(
        session: aiohttp.ClientSession, ctx: object, params: aiohttp.TraceRequestStartParams
    ) -> None:
        seen.append(f"{params.url.query.get('response', 'json')}:{params.headers['Accept']}")

    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        wa = AsyncWachat(KEY, base_url=server.base_url, session=session)
        await wa.instances.create("a")
        await wa.instances.create_qr_image("b")
        await wa.aclose()
        assert not session.closed  # never closes a session it did not open
    assert seen == ["json:application/json", "image:image/png"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"instance_name": ""}, "instance_name must not be empty"),
        ({"instance_name": "   "}, "instance_name must not be empty"),
        ({"instance_name": "x", "number": "62-812-abc"}, "digits with the country code"),
        ({"instance_name": "x", "number": "++628123"}, "digits with the country code"),
        ({"instance_name": "x", "number": "123"}, "7 to 15 digits"),
        ({"instance_name": "x", "integration": "TELEGRAM"}, "integration must be one of"),
        ({"instance_name": "x", "reject_calls": "yes"}, "reject_calls must be True or False"),
        (
            {"instance_name": "x", "integration": "WHATSAPP-BUSINESS", "meta_token": "t"},
            "missing: meta_business_id, meta_phone_number_id",
        ),
    ],
)
async def test_bad_input_is_refused_before_sending(
    wa: AsyncWachat, server: FakeWachat, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message) as info:
        await wa.instances.create(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert server.requests == []


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError)],
)
async def test_documented_error_statuses_map_to_typed_errors(
    wa: AsyncWachat, server: FakeWachat, status: int, error_type: type[WachatError]
) -> None:
    server.inject(Fault.status(status, message=f"refused with {status}"), path="/instance/create")
    with pytest.raises(error_type) as info:
        await wa.instances.create("refused")
    error = info.value
    assert error.status_code == status  # type: ignore[attr-defined]
    assert error.message == f"refused with {status}"  # type: ignore[attr-defined]
    assert '"success": false' in error.body  # type: ignore[attr-defined]
    assert error.attempts == 1
    assert server.stats["created"] == 0


async def test_wrong_key_is_401_from_the_server(server: FakeWachat) -> None:
    async with AsyncWachat("not-the-key", base_url=server.base_url) as wa:
        with pytest.raises(AuthenticationError, match="Invalid or missing API key"):
            await wa.instances.create("x")


async def test_instance_limit_is_403(server: FakeWachat) -> None:
    server.instance_limit = 1
    async with AsyncWachat(KEY, base_url=server.base_url) as wa:
        await wa.instances.create("first")
        with pytest.raises(PermissionDeniedError, match="Instance limit reached"):
            await wa.instances.create("second")
    assert server.stats["created"] == 1


async def test_502_without_retries_is_upstream_error_and_nothing_duplicated(
    server: FakeWachat,
) -> None:
    server.inject(Fault.status(502, message="could not create instance"), path="/instance/create")
    async with AsyncWachat(KEY, base_url=server.base_url, max_retries=0, settle_delay=0.05) as wa:
        with pytest.raises(UpstreamError, match="could not create instance") as info:
            await wa.instances.create("upstream")
    assert info.value.status_code == 502
    assert server.count_instances("upstream") == 0


async def test_502_is_reconciled_then_resent_once(wa: AsyncWachat, server: FakeWachat) -> None:
    server.inject(Fault.status(502), path="/instance/create")
    created = await wa.instances.create("upstream_then_ok")
    assert created.reconciled is False  # the resend succeeded
    assert server.count_instances("upstream_then_ok") == 1


async def test_server_side_validation_errors_are_bad_request(
    wa: AsyncWachat, server: FakeWachat
) -> None:
    with pytest.raises(BadRequestError, match="Unknown field"):
        await wa.request("POST", "/instance/create", json={"instanceName": "x", "bogus": 1})


def test_api_key_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WACHAT_API_KEY", "env-key")
    monkeypatch.setenv("WACHAT_BASE_URL", "http://127.0.0.1:9/api/v1/")
    wa = AsyncWachat()
    assert wa.settings.api_key == "env-key"
    assert wa.base_url == "http://127.0.0.1:9/api/v1"
    monkeypatch.delenv("WACHAT_BASE_URL")
    assert AsyncWachat().base_url == "https://app.wachat.net/api/v1"


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WACHAT_API_KEY", raising=False)
    with pytest.raises(InvalidRequestError, match="WACHAT_API_KEY"):
        AsyncWachat()


def test_plain_http_only_to_loopback_unless_allowed() -> None:
    with pytest.raises(InvalidRequestError, match="plain http"):
        AsyncWachat("k", base_url="http://wachat.example.com/api/v1")
    AsyncWachat("k", base_url="http://wachat.example.com/api/v1", allow_insecure_http=True)
    AsyncWachat("k", base_url="http://localhost:8080/api/v1")
    AsyncWachat("k", base_url="http://[::1]:8080/api/v1")
    with pytest.raises(InvalidRequestError, match="http"):
        AsyncWachat("k", base_url="ftp://wachat.example.com")


async def test_the_key_never_leaks(server: FakeWachat, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wachat_async")
    async with AsyncWachat(KEY, base_url=server.base_url, max_retries=1) as wa:
        server.inject(Fault.status(400, message=f"bad key {KEY} in body"), path="/instance/create")
        with pytest.raises(BadRequestError) as info:
            await wa.instances.create("leak")
        server.inject(Fault.status(503, retry_after=0), path="/instance/list")
        await wa.instances.list()
        created = await wa.instances.create("leak2")
        texts = [
            repr(wa),
            repr(wa.settings),
            str(info.value),
            info.value.body,
            repr(info.value),
            repr(created),
            str(info.value.headers),
            wa.instances.qr_image_url("x"),
        ]
    texts += [r.getMessage() for r in caplog.records]
    assert any("***" in t for t in texts)  # the echoed key was redacted, not dropped silently
    assert caplog.records, "the client logs one debug line per request"
    for text in texts:
        assert KEY not in text
    assert KEY in wa.instances.qr_image_url("x", with_api_key=True)
