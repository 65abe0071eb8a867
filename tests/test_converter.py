"""The converter: strict primitives, tolerant keys and enums, and one error type for bad bodies.

The property tests feed it schema-valid bodies generated from the spec (nulls, odd values and
missing keys included) and arbitrary JSON: the only outcomes allowed are a model or a
ResponseValidationError.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from tests.contract.spec import response_schema, strategy
from wachat_async import (
    ConnectionState,
    CreatedInstance,
    InstanceInfo,
    Integration,
    ResponseValidationError,
    Webhook,
    WebhookEventType,
    _decode,
    _json,
)
from wachat_async._config import Settings
from wachat_async._executor import Executor
from wachat_async._reading import RawResponse
from wachat_async._transport import Transport

T = TypeVar("T")

SETTINGS = Settings("test-key", base_url="http://127.0.0.1:9/api/v1")
#: Turns a decoder's complaint into the ResponseValidationError a caller sees (no network).
EXECUTOR = Executor(Transport(SETTINGS), SETTINGS)


def read(decoder: Callable[[RawResponse], T], raw: RawResponse) -> T:
    """Decode as the executor does: a body that does not fit is a ResponseValidationError."""
    try:
        return decoder(raw)
    except _decode.Undecodable as problem:
        error = EXECUTOR.errors.undecodable(raw, problem, 1)
    raise error


def structure(data: Any, cls: type[T]) -> T:
    return read(lambda _: _decode.structure(data, cls), response({}))


def _decode_created(raw: RawResponse) -> CreatedInstance:
    return read(_decode.created, raw)


def _decode_list_with_skew(raw: RawResponse) -> tuple[list[InstanceInfo], float]:
    return read(_decode.instances_and_clock, raw)


def _decode_qr(raw: RawResponse) -> Any:
    return read(_decode.qr, raw)


def _decode_state(raw: RawResponse) -> Any:
    return read(_decode.state, raw)


VALID_CREATE = {
    "success": True,
    "instance": {
        "id": 26,
        "instanceName": "jakarta_store",
        "displayName": "jakarta_store",
        "apiInstanceName": "t1_mq9r2jov_jakarta_store",
        "internalName": "t1_mq9r2jov_jakarta_store",
        "number": "628123456789",
        "integration": "WHATSAPP-BAILEYS",
    },
    "qrcode": {
        "pairingCode": "PKRFWHWE",
        "code": "2@x",
        "base64": "data:image/png;base64,AA==",
        "imageUrl": None,
        "liveUrl": None,
        "count": 1,
    },
    "qrError": None,
}


def response(body: Any, content_type: str = "application/json") -> RawResponse:
    raw = body if isinstance(body, bytes) else _json.dumps(body)
    return RawResponse(201, CIMultiDictProxy(CIMultiDict({"Content-Type": content_type})), raw)


def test_documented_example_decodes() -> None:
    created = _decode_created(response(VALID_CREATE))
    assert created.instance.api_instance_name == "t1_mq9r2jov_jakarta_store"
    assert created.instance.integration is Integration.WHATSAPP_BAILEYS
    assert created.qrcode is not None
    assert created.qrcode.count == 1
    assert created.raw == VALID_CREATE


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("instance", "number"), 628123456789, "instance.number"),
        (("instance", "id"), "26", "instance.id"),
        (("instance", "id"), True, "instance.id"),
        (("qrcode", "count"), "1", "qrcode.count"),
        (("success",), "false", "success"),
        (("qrError",), 5, "qrError"),
        (("instance", "apiInstanceName"), None, "instance.apiInstanceName"),
        (("qrcode",), "not an object", "qrcode"),
    ],
)
def test_primitives_are_strict_and_errors_name_the_json_field(
    path: tuple[str, ...], value: Any, field: str
) -> None:
    body = _json.loads(_json.dumps(VALID_CREATE))
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    if path == ("instance", "apiInstanceName"):
        body["instance"].pop("internalName")
    with pytest.raises(ResponseValidationError) as info:
        _decode_created(response(body))
    assert info.value.field == field
    assert "jakarta_store" in info.value.body  # the raw body is kept


def test_internal_name_stands_in_for_a_missing_api_name() -> None:
    body = _json.loads(_json.dumps(VALID_CREATE))
    del body["instance"]["apiInstanceName"]
    assert _decode_created(response(body)).instance.api_instance_name == "t1_mq9r2jov_jakarta_store"


def test_unknown_keys_are_ignored_and_unknown_enum_values_kept() -> None:
    body = _json.loads(_json.dumps(VALID_CREATE))
    body["brandNewField"] = {"nested": [1, 2]}
    body["instance"]["integration"] = "WHATSAPP-TELEGRAM-BRIDGE"
    created = _decode_created(response(body))
    assert created.instance.integration == "WHATSAPP-TELEGRAM-BRIDGE"
    assert isinstance(created.instance.integration, Integration)
    assert created.instance.integration is not None
    assert not created.instance.integration.is_known
    assert created.raw["brandNewField"] == {"nested": [1, 2]}


def test_repeated_fields_collapse_to_one_attribute() -> None:
    info = structure(
        {
            "internalName": "t1_a_b",
            "status": "pairing",
            "profilePicUrl": "https://p/x.jpg",
            "createdAt": "2026-06-13T08:00:00.000Z",
        },
        InstanceInfo,
    )
    assert info.api_instance_name == "t1_a_b"
    assert info.state == "pairing"
    assert info.state is not ConnectionState.OPEN
    assert info.profile_picture_url == "https://p/x.jpg"
    assert info.created_at is not None
    assert info.created_at.year == 2026


def test_lists_are_not_strings() -> None:
    with pytest.raises(ResponseValidationError) as info:
        structure({"events": "messages.upsert"}, Webhook)
    assert info.value.field == "events"
    hook = structure({"events": ["*", "groups.upsert"]}, Webhook)
    assert hook.events[0] is WebhookEventType.ALL
    assert hook.events[1] == "groups.upsert"


def test_state_reads_both_places_the_api_puts_it() -> None:
    body = {
        "success": True,
        "data": {"instance": {"instanceName": "t1_x_y", "state": "open"}},
        "instance": {"instanceName": "y", "profileName": "Y", "profilePictureUrl": None},
    }
    state = _decode_state(response(body))
    assert state.api_instance_name == "t1_x_y"
    assert state.instance_name == "y"
    assert state.is_connected
    assert state.raw == body


@pytest.mark.parametrize(
    "body",
    [
        {"base64": "data:image/png;base64,AA==", "code": "2@c"},
        {"success": True, "qrcode": {"code": "2@c", "count": 2}},
        {"success": True, "data": {"qrcode": {"pairingCode": "ABCDEFGH"}}},
        {"success": True, "data": {"code": "2@c"}},
    ],
)
def test_qr_response_is_parsed_tolerantly(body: dict[str, Any]) -> None:
    qr = _decode_qr(response(body))
    assert qr.code == "2@c" or qr.pairing_code == "ABCDEFGH"


def test_qr_response_without_a_qr_is_a_typed_error() -> None:
    with pytest.raises(ResponseValidationError, match="No QR code"):
        _decode_qr(response({"success": True}))


@pytest.mark.parametrize(
    ("raw", "content_type", "message"),
    [
        (b'{"success": tru', "application/json", "not valid JSON"),
        (b"<html>oops</html>", "text/html", "Expected a JSON response"),
        (b"[1, 2]", "application/json", "Expected a JSON object"),
        (b"\xff\xfe", "application/json", "not valid JSON"),
    ],
)
def test_undecodable_bodies_are_typed_errors(raw: bytes, content_type: str, message: str) -> None:
    with pytest.raises(ResponseValidationError, match=message):
        _decode_created(response(raw, content_type))


def test_list_requires_its_instances_key() -> None:
    with pytest.raises(ResponseValidationError) as info:
        _decode_list_with_skew(response({"success": True, "count": 0}))
    assert info.value.field == "instances"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(strategy(response_schema("POST", "/instance/create", 201, "application/json")))
def test_any_schema_valid_create_body_gives_a_model_or_a_typed_error(body: Any) -> None:
    try:
        created = _decode_created(response(body))
    except ResponseValidationError:
        return
    assert isinstance(created, CreatedInstance)
    assert created.instance.api_instance_name


@_FUZZ
@given(strategy(response_schema("GET", "/instance/list", 200, "application/json")))
def test_any_schema_valid_list_body_gives_models_or_a_typed_error(body: Any) -> None:
    try:
        infos, _ = _decode_list_with_skew(response(body))
    except ResponseValidationError:
        return
    assert all(isinstance(i, InstanceInfo) for i in infos)


@_FUZZ
@given(strategy(response_schema("GET", "/webhooks", 200, "application/json")))
def test_any_schema_valid_webhook_list_gives_models_or_a_typed_error(body: Any) -> None:
    try:
        hooks = read(_decode.webhooks, response(body))
    except ResponseValidationError:
        return
    assert all(isinstance(h, Webhook) for h in hooks)


@_FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["success", "instance", "qrcode", "qrError", "x"]), _json_values
    )
)
def test_arbitrary_json_never_raises_anything_but_the_typed_error(body: dict[str, Any]) -> None:
    for decoder in (_decode_created, _decode_state, _decode_qr):
        with contextlib.suppress(ResponseValidationError):
            decoder(response(body))


def test_json_encodes_big_integers_with_or_without_speedups() -> None:
    big = {"id": 2**64, "neg": -(2**63) - 1, "text": "héllo", "list": [1.5, None, True]}
    assert json.loads(_json.dumps(big)) == big  # orjson refuses these; the module falls back
    with pytest.raises(_json.JSONDecodeError):
        _json.loads(b'{"a": ')


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":"\xc3\xa9"}',
        '{"a":"\u00e9"}'.encode("utf-16"),
        '{"a":1}'.encode("utf-16-le"),
        '{"a":1}'.encode("utf-32"),
        b'\xef\xbb\xbf{"a":1}',
        b'"\xed\xa0\x80"',  # an encoded lone surrogate, which json.loads lets through
        b'{"a":\xff}',
        b"1",
        b"",
        "{}",
    ],
)
def test_decoding_reads_bytes_exactly_as_json_loads(body: bytes | str) -> None:
    """The plain decoder skips json.loads' encoding detection for plain UTF-8 bytes: same
    answers and same errors for every other encoding, BOM and broken byte."""

    def outcome(loads: Any) -> object:
        try:
            return loads(body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            return type(exc), str(exc)

    assert outcome(_json._std_loads) == outcome(json.loads)


@pytest.mark.skipif(_json.orjson is not None, reason="the plain install's decoder")
def test_big_integers_decode_exactly_without_speedups() -> None:
    assert _json.loads(b'{"a": 18446744073709551616}') == {"a": 2**64}


@pytest.mark.skipif(_json.orjson is None, reason="needs the speedups extra")
def test_big_integers_under_speedups_fail_typed_not_silently() -> None:
    """orjson reads integers beyond 64 bits as floats; a model's int field then refuses them."""
    body = _json.dumps({"instance": {"id": 2**64, "apiInstanceName": "t1_x_y"}})
    with pytest.raises(ResponseValidationError) as info:
        _decode_created(response(body))
    assert info.value.field == "instance.id"
