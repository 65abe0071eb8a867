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


class Telemetry:
    """The OpenTelemetry API, imported: its tracer once a provider is configured."""

    def __init__(self) -> None:
        from opentelemetry import trace

        self.trace = trace
        self._tracer: Any = None

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
