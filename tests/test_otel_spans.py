"""OpenTelemetry spans, exported by the real SDK into memory: one span per operation with the
HTTP client attributes, retry and reconciliation events, errors, trace context into bulk
workers, the sync facade and webhook handling, and no form of the key anywhere."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import FAST_RETRY, KEY, serving
from tests.test_edges_webhooks import SECRET, UPSERT, delivery
from wachat_async import (
    AsyncWachat,
    Hooks,
    NotFoundError,
    Pace,
    SendSpec,
    ServerError,
    TextMessage,
    Wachat,
    WachatError,
)
from wachat_async.testing import FakeWachat, Fault
from wachat_async.webhooks import WebhookEvent, WebhookReceiver

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _provider() -> Iterator[None]:
    """The SDK as the application would set it (once per process), exporting into memory
    while these tests run: then the exporter stops keeping spans, so that later tests in the
    process (a flood of webhook deliveries) do not fill memory with them."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    yield
    _EXPORTER.shutdown()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]


async def test_a_503_then_success_is_one_span_of_two_attempts_with_a_retry_event(
    server: FakeWachat, wa: AsyncWachat, spans: InMemorySpanExporter
) -> None:
    server.inject(Fault.status(503), path="/instance/create")
    created = await wa.instances.create("otel_shop")
    (span,) = named(spans, "wachat.instances.create")
    attributes: dict[str, Any] = dict(span.attributes or {})
    assert span.kind is SpanKind.CLIENT
    assert attributes["http.request.method"] == "POST"
    assert attributes["url.template"] == "/instance/create"
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == int(server.base_url.split(":")[2].split("/")[0])
    assert attributes["wachat.attempts"] == 2
    assert 200 <= attributes["http.response.status_code"] < 300  # the last attempt's
    assert attributes["wachat.instance"] == created.instance.api_instance_name
    (retry,) = events(span, "retry")
    assert retry["wachat.retry.failure_class"] == "throttled"
    assert retry["error.type"] == "ServerError"
    assert retry["wachat.retry.after_attempt"] == 1
    assert retry["wachat.retry.wait_seconds"] >= 0
    assert span.status.status_code is StatusCode.UNSET


async def test_a_404_ends_the_span_in_error_with_the_error_type(
    wa: AsyncWachat, spans: InMemorySpanExporter
) -> None:
    with pytest.raises(NotFoundError):
        await wa.instances.state("t1_nobody_here")
    (span,) = named(spans, "wachat.instances.state")
    attributes: dict[str, Any] = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert attributes["error.type"] == "NotFoundError"
    assert attributes["http.response.status_code"] == 404
    assert attributes["url.template"] == "/instance/state"
    assert attributes["wachat.instance"] == "t1_nobody_here"
    assert attributes["wachat.attempts"] == 1


async def test_a_lost_create_shows_reconciliation_and_its_list_as_a_child_span(
    server: FakeWachat, wa: AsyncWachat, spans: InMemorySpanExporter
) -> None:
    server.inject(Fault.drop_after(), path="/instance/create")
    created = await wa.instances.create("otel_lost")
    assert created.reconciled
    (create,) = named(spans, "wachat.instances.create")
    assert events(create, "reconcile") == [
        {"wachat.reconcile.step": "settle", "wachat.reconcile.outcome": "found"}
    ]
    assert "http.response.status_code" not in (create.attributes or {})  # no answer came
    lists = named(spans, "wachat.instances.list")
    assert lists
    assert all(s.parent is not None and s.parent.span_id == create.context.span_id for s in lists)


async def test_a_create_proven_undone_shows_the_settle_and_the_look_after_the_resend(
    server: FakeWachat, wa: AsyncWachat, spans: InMemorySpanExporter
) -> None:
    server.inject(Fault.status(500), path="/instance/create")  # refused: nothing was made
    await wa.instances.create("otel_resent")
    (create,) = named(spans, "wachat.instances.create")
    assert events(create, "reconcile") == [
        {"wachat.reconcile.step": "settle", "wachat.reconcile.outcome": "not_done"},
        {"wachat.reconcile.step": "resent", "wachat.reconcile.outcome": "checked"},
    ]
    assert [e["wachat.retry.failure_class"] for e in events(create, "retry")] == ["ambiguous"]
    assert dict(create.attributes or {})["wachat.attempts"] == 2


async def test_a_send_names_its_operation_and_instance(
    server: FakeWachat, wa: AsyncWachat, spans: InMemorySpanExporter
) -> None:
    created = await wa.instances.create("otel_sender")
    name = created.instance.api_instance_name
    server.scan(name)
    await wa.messages.send_text(name, "628123456789", "hello")
    (send,) = named(spans, "wachat.messages.send_text")
    assert dict(send.attributes or {})["wachat.instance"] == name
    assert dict(send.attributes or {})["url.template"] == "/send/text"


async def test_create_many_workers_continue_the_callers_trace(
    wa: AsyncWachat, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("provisioning") as parent:
        specs = [{"instance_name": f"otel_bulk_{i}"} for i in range(6)]
        results = [r async for r in wa.instances.create_many(specs, concurrency=3)]
    assert [r.ok for r in results] == [True] * 6
    creates = named(spans, "wachat.instances.create")
    assert len(creates) == 6
    context = parent.get_span_context()
    assert all(s.parent is not None and s.parent.span_id == context.span_id for s in creates)
    assert {s.context.trace_id for s in creates} == {context.trace_id}


async def test_send_many_workers_continue_the_callers_trace(
    server: FakeWachat, wa: AsyncWachat, spans: InMemorySpanExporter
) -> None:
    name = (await wa.instances.create("otel_broadcaster")).instance.api_instance_name
    server.scan(name)
    specs = [
        SendSpec(instance=name, recipient=f"6281{n:08d}", message=TextMessage("hi"))
        for n in range(5)
    ]
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("campaign") as parent:
        pace = Pace.off(per_instance=4)
        results = [r async for r in wa.messages.send_many(specs, campaign="otel", pace=pace)]
    assert [r.ok for r in results] == [True] * 5
    sends = named(spans, "wachat.messages.send_text")
    assert len(sends) == 5
    context = parent.get_span_context()
    assert {s.context.trace_id for s in sends} == {context.trace_id}


def test_the_sync_facade_continues_the_calling_threads_trace(
    thread_server: FakeWachat, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("tests")
    with (
        Wachat(KEY, base_url=thread_server.base_url, retry_policy=FAST_RETRY) as wa,
        tracer.start_as_current_span("job") as parent,
    ):
        wa.instances.create("otel_sync")
    (create,) = named(spans, "wachat.instances.create")
    assert create.parent is not None
    assert create.parent.span_id == parent.get_span_context().span_id


async def test_each_webhook_delivery_handled_gets_a_span(spans: InMemorySpanExporter) -> None:
    async def handler(event: WebhookEvent) -> None:
        if event.instance == "t1_abc_broken":
            raise RuntimeError(f"handler broke on {SECRET}")

    receiver = WebhookReceiver(SECRET, handler)
    async with serving(receiver.app()) as url, aiohttp.ClientSession() as session:
        for payload in (UPSERT, {**UPSERT, "instance": "t1_abc_broken"}):
            body, headers = delivery(payload)
            async with session.post(url + "/", data=body, headers=headers) as resp:
                assert resp.status == 200
        await receiver.drain()
    received = named(spans, "wachat.webhooks.receive")
    assert len(received) == 2
    broken, ok = sorted(received, key=lambda s: str((s.attributes or {})["wachat.instance"]))
    assert ok.kind is SpanKind.CONSUMER
    assert dict(ok.attributes or {}) == {
        "wachat.webhook.event": "messages.upsert",
        "wachat.instance": "t1_abc_store",
    }
    assert ok.status.status_code is StatusCode.UNSET
    assert broken.status.status_code is StatusCode.ERROR
    assert dict(broken.attributes or {})["error.type"] == "RuntimeError"
    assert SECRET not in broken.to_json()  # the handler's message is not recorded


# -- nothing secret --------------------------------------------------------------------------


def key_forms(key: str) -> list[str]:
    """The key as text (any case is checked by folding) and in base64, with and without
    ``Bearer``, standard and URL-safe; and every 12-character piece of it."""
    forms = [key]
    for text in (key, f"Bearer {key}", f":{key}"):
        raw = text.encode()
        forms += [
            base64.b64encode(raw).decode().rstrip("="),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
        ]
    forms += [key[i : i + 12] for i in range(len(key) - 11)]
    return forms


def hostile_app(key: str) -> web.Application:
    """Answers every request with the key echoed in the body and the headers, in every form."""
    echoed = " ".join([key, key.upper(), base64.b64encode(key.encode()).decode()])

    async def answer(request: web.Request) -> web.Response:
        status = 404 if "state" in request.path else 500
        body = json.dumps({"message": f"bad key {echoed}", "query": request.query_string})
        return web.Response(
            status=status,
            text=body,
            content_type="application/json",
            headers={"X-Echo": echoed, "WWW-Authenticate": f'Bearer realm="{key}"'},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    async with serving(hostile_app(KEY)) as url:
        yield url


async def test_no_form_of_the_key_reaches_any_span_from_a_server_that_echoes_it(
    hostile: str, spans: InMemorySpanExporter
) -> None:
    seen: list[object] = []
    hooks = Hooks(on_request=seen.append, on_response=seen.append, on_retry=seen.append)
    async with AsyncWachat(
        KEY, base_url=hostile, retry_policy=FAST_RETRY, max_retries=1, hooks=hooks
    ) as wa:
        with pytest.raises(NotFoundError):
            await wa.instances.state("t1_x_shop")
        with pytest.raises(ServerError):
            await wa.instances.qr("t1_x_shop")
        # The QR image and live URLs carry the key as ``apiKey``; asked for through request():
        for path in ("/instance/qr/image", "/instance/qr/live"):
            with pytest.raises(WachatError):
                await wa.request("GET", path, params={"instanceName": "t1_x", "apiKey": KEY})
        with pytest.raises(WachatError):
            await wa.messages.send_text("t1_x_shop", "628123456789", f"my key is {KEY}")
    exported = [s.to_json() for s in spans.get_finished_spans()]
    assert len(exported) == 5
    text = "\n".join(exported).casefold()
    leaks = [form for form in key_forms(KEY) if form.casefold() in text]
    assert leaks == []
    assert "apikey" not in text  # no query is ever recorded
    assert any("ERROR" in s for s in exported)
    # What the hooks saw is redacted too: the apiKey values and the Authorization header.
    shown = "\n".join(map(repr, seen)).casefold()
    assert [form for form in key_forms(KEY) if form.casefold() in shown] == []
    assert "apikey=***" in shown
    assert "bearer ***" in shown


def test_without_a_provider_no_tracer_is_used_and_none_once_the_package_is_missing() -> None:
    script = """
from wachat_async import AsyncWachat, _otel
wa = AsyncWachat("k" * 20, base_url="http://127.0.0.1:9")
assert _otel.telemetry().tracer() is None
assert wa._executor._observer.watch(object()) is None  # no hooks, no provider: no watch
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
trace.set_tracer_provider(TracerProvider())
assert _otel.telemetry().tracer() is not None
_otel._installed, _otel._telemetry = False, None  # as if opentelemetry were not installed
assert _otel.telemetry() is None
assert AsyncWachat("k" * 20, base_url="http://127.0.0.1:9")._executor._observer is None
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr
