"""OpenTelemetry metrics, read by the real SDK's InMemoryMetricReader: the request duration
histogram and the attempts, retries and reconciliations counters, with low-cardinality labels
only."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from wachat_async import AsyncWachat
from wachat_async.testing import FakeWachat, Fault

_READER = InMemoryMetricReader()

#: Every label the client's metrics may carry: none names a number, a message or an instance.
LABELS = {
    "wachat.operation",
    "http.request.method",
    "url.template",
    "server.address",
    "server.port",
    "http.response.status_code",
    "error.type",
    "wachat.retry.failure_class",
    "wachat.reconcile.step",
    "wachat.reconcile.outcome",
}


@pytest.fixture(scope="module", autouse=True)
def _provider() -> None:
    """A meter provider as the application would set it (once per process)."""
    metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))


def read() -> dict[str, list[Any]]:
    """Data points by metric name, of the client's meter only (cumulative, the reader's
    default)."""
    data = _READER.get_metrics_data()
    found: dict[str, list[Any]] = {}
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            if scope.scope.name != "wachat_async":
                continue
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def total(points: list[Any]) -> int:
    """A counter's sum over its label sets (cumulative: compare two reads)."""
    return sum(p.value for p in points)


async def test_a_503_then_success_counts_two_attempts_one_retry_and_two_durations(
    server: FakeWachat, wa: AsyncWachat
) -> None:
    before = read()
    server.inject(Fault.status(503), path="/instance/create")
    await wa.instances.create("metered_shop")
    after = read()

    def count(name: str) -> int:
        return total(after.get(name, [])) - total(before.get(name, []))

    creates = [
        p
        for p in after["http.client.request.duration"]
        if dict(p.attributes)["wachat.operation"] == "instances.create"
    ]
    statuses = sorted(dict(p.attributes)["http.response.status_code"] for p in creates)
    assert 503 in statuses
    assert 201 in statuses
    failing = [p for p in creates if dict(p.attributes)["http.response.status_code"] == 503]
    assert dict(failing[0].attributes)["error.type"] == "503"
    assert sum(p.count for p in creates) >= 2
    assert count("wachat.client.attempts") >= 2
    retries = after["wachat.client.retries"]
    assert {dict(p.attributes)["wachat.retry.failure_class"] for p in retries} == {"throttled"}
    assert count("wachat.client.retries") == 1


async def test_reconciliations_are_counted_by_step_and_outcome(
    server: FakeWachat, wa: AsyncWachat
) -> None:
    before = read()
    server.inject(Fault.drop_after(), path="/instance/create")
    await wa.instances.create("metered_lost")
    after = read()
    steps = [
        (
            dict(p.attributes)["wachat.reconcile.step"],
            dict(p.attributes)["wachat.reconcile.outcome"],
        )
        for p in after["wachat.client.reconciliations"]
    ]
    assert ("settle", "found") in steps
    grown = total(after["wachat.client.reconciliations"]) - total(
        before.get("wachat.client.reconciliations", [])
    )
    assert grown == 1


async def test_no_label_names_an_instance_a_number_or_a_message(
    server: FakeWachat, wa: AsyncWachat
) -> None:
    created = await wa.instances.create("metered_labels")
    name = created.instance.api_instance_name
    server.scan(name)
    sent = await wa.messages.send_text(name, "628123456789", "hello")
    everything = read()
    assert set(everything) >= {"http.client.request.duration", "wachat.client.attempts"}
    labels = {k for points in everything.values() for p in points for k in dict(p.attributes)}
    assert labels <= LABELS
    values = " ".join(
        str(v)
        for points in everything.values()
        for p in points
        for v in dict(p.attributes).values()
    )
    message_id = sent.message_id
    assert message_id is not None
    for private in (name, "metered_labels", "628123456789", message_id):
        assert private not in values
