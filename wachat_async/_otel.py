"""OpenTelemetry, when the application has it (the ``otel`` extra: ``opentelemetry-api``).

Nothing here imports OpenTelemetry until a client is built, and then only when the package is
installed (:func:`telemetry`, checked once per process). Until the application configures a
tracer provider, each call costs one attribute read (:meth:`Telemetry.tracer`): the API's
proxy tracer would hand out spans that record nothing, at the price of a span object, a
context switch and a dozen calls per operation. Once a provider is set (OpenTelemetry allows
it once per process), the tracer is kept.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from typing import Any

from ._version import __version__

_NAME = "wachat_async"

#: Whether ``opentelemetry`` can be imported; None until a client asks.
_installed: bool | None = None
_telemetry: Telemetry | None = None
_UNKNOWN = object()


class Instruments:
    """The client's metrics (OpenTelemetry's HTTP client conventions, and its own counters),
    labelled by operation, method, path template, server, status and failure class alone: no
    number, message id or instance name."""

    def __init__(self, meter: Any) -> None:
        self.duration = meter.create_histogram(
            "http.client.request.duration", unit="s", description="Duration of each attempt."
        )
        self.attempts = meter.create_counter(
            "wachat.client.attempts", unit="{attempt}", description="Requests sent."
        )
        self.retries = meter.create_counter(
            "wachat.client.retries", unit="{retry}", description="Retries, by failure class."
        )
        self.reconciliations = meter.create_counter(
            "wachat.client.reconciliations",
            unit="{step}",
            description="Reconciliation steps of calls whose outcome was in doubt.",
        )


class Telemetry:
    """The OpenTelemetry API, imported: its tracer and instruments once providers are
    configured."""

    def __init__(self) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.metrics import _internal as metrics_state

        self.trace = trace
        self.metrics = metrics
        self._metrics_state = metrics_state
        self._tracer: Any = None
        self._instruments: Instruments | None = None

    def instruments(self) -> Instruments | None:
        """The instruments to record a call in, or None while no meter provider is configured."""
        instruments = self._instruments
        if instruments is None:
            # As for the tracer: the global the API sets once, else the public check.
            provider = getattr(self._metrics_state, "_METER_PROVIDER", _UNKNOWN)
            if provider is _UNKNOWN:
                provider = self.metrics.get_meter_provider()
                if type(provider).__name__ == "_ProxyMeterProvider":
                    provider = None
            if provider is None:
                return None
            meter = self.metrics.get_meter(_NAME, __version__)
            instruments = self._instruments = Instruments(meter)
        return instruments

    def tracer(self) -> Any:
        """The tracer to use for a call, or None while no tracer provider is configured."""
        tracer = self._tracer
        if tracer is None:
            trace = self.trace
            # The global the API sets once (set_tracer_provider); a private name, so fall back
            # to the public, dearer check (it reads the environment) if it ever goes away.
            provider = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
            if provider is _UNKNOWN:
                provider = trace.get_tracer_provider()
            if provider is None or isinstance(provider, trace.ProxyTracerProvider):
                return None
            tracer = self._tracer = trace.get_tracer(_NAME, __version__)
        return tracer


def telemetry() -> Telemetry | None:
    """The OpenTelemetry API when it is installed (looked for once per process), else None."""
    global _installed, _telemetry
    if _installed is None:
        try:
            _installed = importlib.util.find_spec("opentelemetry.trace") is not None
        except ModuleNotFoundError:  # no opentelemetry namespace at all
            _installed = False
        if _installed:
            _telemetry = Telemetry()
    return _telemetry


@contextlib.contextmanager
def delivery(event_type: str, instance: str | None) -> Iterator[None]:
    """A span ``wachat.webhooks.receive`` around handling one webhook delivery, when traced:
    its event type and instance, and on failure the exception's class name alone (a handler's
    message may quote anything)."""
    found = telemetry()
    tracer = None if found is None else found.tracer()
    if tracer is None:
        yield
        return
    trace = found.trace  # type: ignore[union-attr]
    attributes = {"wachat.webhook.event": event_type}
    if instance is not None:
        attributes["wachat.instance"] = instance
    with tracer.start_as_current_span(
        "wachat.webhooks.receive",
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(trace.Status(trace.StatusCode.ERROR))
            raise
