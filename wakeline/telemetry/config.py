"""Telemetry from the standard ``OTEL_*`` environment variables."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping

from wakeline.telemetry.runtime import CAPTURE_ENV, Telemetry
from wakeline.telemetry.tracing import HAVE_OTEL

log = logging.getLogger(__name__)


def configure_from_env(environ: Mapping[str, str] | None = None) -> Telemetry:
    """Telemetry from the standard ``OTEL_*`` variables; a no-op one unless asked for.

    Enabled when ``OTEL_TRACES_EXPORTER`` is ``otlp`` and/or ``console``, or when
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (OTLP over HTTP).  ``OTEL_METRICS_EXPORTER``
    defaults to the traces exporter; ``OTEL_SERVICE_NAME`` to ``wakeline-worker``."""
    env = os.environ if environ is None else environ
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    traces = _exporters(env.get("OTEL_TRACES_EXPORTER", ""), "otlp" if endpoint else "")
    metrics = _exporters(env.get("OTEL_METRICS_EXPORTER", ""), ",".join(traces))
    capture = env.get(CAPTURE_ENV, "").strip().lower() == "true"
    if not traces and not metrics:
        return Telemetry(capture_content=capture)
    if not HAVE_OTEL:
        log.warning("OTEL_* is set but the 'otel' extra is not installed: telemetry is off")
        return Telemetry(capture_content=capture)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader as Reader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "wakeline-worker"})
    tracer_provider = SDKTracerProvider(resource=resource) if traces else None
    for name in traces:
        exporter = ConsoleSpanExporter() if name == "console" else OTLPSpanExporter()
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))  # type: ignore[union-attr]
    readers = [
        Reader(ConsoleMetricExporter() if n == "console" else OTLPMetricExporter()) for n in metrics
    ]
    meter_provider = SDKMeterProvider(readers, resource) if readers else None
    return Telemetry(tracer_provider, meter_provider, capture_content=capture)


def _exporters(value: str, default: str) -> list[str]:
    names = [n.strip().lower() for n in (value or default).split(",") if n.strip()]
    unknown = [n for n in names if n not in ("otlp", "console", "none")]
    if unknown:
        log.warning("unsupported OTel exporters %s (use otlp or console)", unknown)
    return [n for n in names if n in ("otlp", "console")]


@functools.cache
def default_telemetry() -> Telemetry:
    """The process's telemetry, configured once from the environment."""
    return configure_from_env()
