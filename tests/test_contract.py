"""The fake server and the client both keep to ../shared/wachat-api/openapi.yaml.

Every request the client sends while exercising every operation is checked against the spec's
request body, and every answer the fake gives against the documented response (or, for an
error status the spec does not document, against the inferred ``{success, error}`` shape).
"""

from __future__ import annotations

import contextlib
import filecmp
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import KEY, serving
from tests.contract import spec
from wachat_async import (
    AsyncWachat,
    ConflictError,
    CreatedInstance,
    ListRow,
    ListSection,
    OutcomeUnknownError,
    ResponseValidationError,
    UnreadableOutcomeError,
)
from wachat_async.testing import Exchange, FakeWachat, Fault

# Paths the spec does not know: the fake's stand-in for the unpublished logout.
FAKE_ONLY = {"/instance/logout"}


def test_vendored_spec_is_the_shared_one() -> None:
    if not spec.SHARED_SPEC.exists():
        pytest.skip("../shared is not beside this checkout")
    assert filecmp.cmp(spec.SPEC_PATH, spec.SHARED_SPEC, shallow=False)


def check_exchange(exchange: Exchange) -> None:
    request = exchange.request
    if request.path in FAKE_ONLY:
        return
    what = f"{request.method} {request.path}"
    if exchange.status < 400:
        schema = spec.request_schema(request.method, request.path)
        if schema is not None:
            spec.validate(request.json, schema, f"request body of {what}")
    documented = spec.spec()["paths"][request.path][request.method.lower()]["responses"]
    if exchange.status >= 400 and str(exchange.status) not in documented:
        error_shape = spec._to_json_schema(spec.spec()["components"]["schemas"]["ErrorInferred"])
        spec.validate(exchange.body, {**error_shape, "required": ["success", "error"]}, what)
        return
    schema = spec.response_schema(
        request.method, request.path, exchange.status, exchange.content_type
    )
    if schema is not None and exchange.content_type == "application/json":
        spec.validate(exchange.body, schema, f"{exchange.status} answer to {what}")


async def exercise_everything(wa: AsyncWachat, server: FakeWachat) -> None:
    created = await wa.instances.create(
        "contract",
        number="628123456789",
        integration="WHATSAPP-BAILEYS",
        reject_calls=False,
        ignore_groups=True,
        always_online=True,
        read_messages=False,
        read_status=False,
    )
    await wa.instances.create(
        "cloud",
        integration="WHATSAPP-BUSINESS",
        meta_token="t",
        meta_business_id="b",
        meta_phone_number_id="p",
    )
    server.fail_qr()
    await wa.instances.create("no_qr")
    await wa.instances.create_qr_image("image_form")
    name = created.instance.api_instance_name
    await wa.instances.qr(name)
    await wa.instances.qr_image(name)
    await wa.instances.state(name)
    await wa.instances.list()
    await wa.webhooks.upsert(
        "https://example.com/h",
        name="h",
        events=["*"],
        instance_name=name,
        enabled=True,
        secret="whsec_abc",
    )
    await wa.webhooks.upsert("https://example.com/h2", id=1, events=["qrcode.updated"])
    await wa.webhooks.list()
    await wa.webhooks.list(name)
    server.scan(name)
    await wa.instances.profile_picture(name)
    await wa.messages.send_text(name, "628111222333", "hi", delay=0)
    await wa.messages.send_media(
        name,
        "628111222333",
        "https://x.example/a.pdf",
        media_type="document",
        caption="c",
        file_name="a.pdf",
        mimetype="application/pdf",
    )
    await wa.messages.send_location(
        name, "628111222333", latitude=1.5, longitude=2, place_name="p", address="a"
    )
    await wa.messages.send_list(
        name,
        "628111222333",
        title="t",
        text="x",
        button_text="b",
        sections=[ListSection("s", [ListRow("r", "d", "id")])],
        footer_text="f",
    )
    await wa.messages.send_buttons(name, "628111222333", text="ok?", buttons=["y", "n"])
    await wa.request(
        "POST",
        "/send",
        json={"instanceName": name, "number": "628111222333", "type": "text", "message": "generic"},
    )
    # Error answers, documented and not.
    for status in (400, 401, 403, 502):
        server.inject(Fault.status(status), path="/instance/create")
    for _ in range(3):
        with contextlib.suppress(Exception):
            await wa.instances.create("refused", max_retries=0)
    with contextlib.suppress(ConflictError):
        await wa.instances.delete(name)  # 409: still connected
    server.logout(name)
    await wa.instances.delete(name)


async def test_every_exchange_keeps_to_the_spec(server: FakeWachat) -> None:
    async with AsyncWachat(KEY, base_url=server.base_url, settle_delay=0.05) as wa:
        await exercise_everything(wa, server)
    paths = {(e.request.method, e.request.path) for e in server.exchanges}
    documented = {
        (m.upper(), p)
        for p, ops in spec.spec()["paths"].items()
        for m in ops
        if p not in ("/instance/qr/live",)
    }
    assert documented - paths == set(), "every documented operation was exercised"
    statuses = {e.status for e in server.exchanges}
    assert {200, 201, 400, 401, 403, 409}.issubset(statuses)
    for exchange in server.exchanges:
        check_exchange(exchange)


def test_the_checker_itself_rejects_a_broken_body() -> None:
    schema = spec.request_schema("POST", "/send/text")
    with pytest.raises(AssertionError, match="breaks the spec"):
        spec.validate({"instanceName": "x", "number": "1", "type": "text"}, schema, "send")
    with pytest.raises(AssertionError, match="breaks the spec"):
        spec.validate(
            {"success": True, "instance": {"id": "26"}},
            spec.response_schema("POST", "/instance/create", 201, "application/json"),
            "create",
        )


async def test_unreadable_create_answer_is_both_typed_errors_and_quick(server: FakeWachat) -> None:
    server.inject(Fault.malformed(), path="/instance/create")
    server.inject(Fault.status(404), path="/instance/list", times=None)  # cannot reconcile
    async with AsyncWachat(KEY, base_url=server.base_url, settle_delay=30) as wa:
        with pytest.raises(ResponseValidationError) as info:
            await wa.instances.create("unreadable")
    error = info.value
    assert isinstance(error, UnreadableOutcomeError)
    assert isinstance(error, OutcomeUnknownError)  # not resent
    assert '{"success": true' in error.body
    assert server.stats["requests POST /instance/create"] == 1
    assert server.count_instances("unreadable") == 1


@pytest.fixture
async def spec_server() -> AsyncIterator[tuple[str, list[Any]]]:
    """A server that answers create with whatever the test puts in the queue (no list route)."""
    queue: list[Any] = []

    async def create(request: web.Request) -> web.Response:
        return web.json_response(queue.pop(0), status=201)

    app = web.Application()
    app.router.add_post("/api/v1/instance/create", create)
    async with serving(app) as root:
        yield f"{root}/api/v1", queue


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_random_schema_valid_create_answers_over_http(
    spec_server: tuple[str, list[Any]], data: st.DataObject
) -> None:
    base_url, queue = spec_server
    body = data.draw(
        spec.strategy(spec.response_schema("POST", "/instance/create", 201, "application/json"))
    )
    queue.append(body)
    async with AsyncWachat(KEY, base_url=base_url, max_retries=0, settle_delay=0) as wa:
        try:
            created = await wa.instances.create("random")
        except ResponseValidationError:
            return
    assert isinstance(created, CreatedInstance)
    assert created.instance.api_instance_name
