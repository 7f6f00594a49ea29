"""Overhead of OpenTelemetry on journaled steps: the ``steps`` workload (sync=normal) with
telemetry off, on, and on with message content captured.

"On" is the real SDK -- a ``TracerProvider`` with a ``BatchSpanProcessor`` and a
``MeterProvider`` with a ``PeriodicExportingMetricReader`` -- feeding exporters that drop
what they get, so the figures are the SDK's cost, not an exporter's I/O.  The variants are
interleaved in rounds (a fresh worker each, the order rotated every round) and summarised by
medians, so that drift of the machine favours none of them.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from benchmarks.harness import (
    TimedModel,
    bench_app,
    percentile,
    running_worker,
    scratch_dir,
    sequential_runs,
)
from benchmarks.registry import Profile, Row, register
from wakeline.telemetry.runtime import Telemetry

OFF = "off"
VARIANTS = (OFF, "on", "on+content")
"""``on``: traces and metrics; ``on+content``: the same with ``capture_content=True``."""


class DropSpans(SpanExporter):
    """Counts the spans it is given and drops them."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


class DropMetrics(MetricExporter):
    """Records the names of the metrics it is given and drops them."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        for resource in metrics_data.resource_metrics:
            for scope in resource.scope_metrics:
                self.names.update(metric.name for metric in scope.metrics)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


@dataclass(slots=True)
class Sample:
    """One variant in one round."""

    wall_s: float
    overheads_us: list[float]
    spans: int


@register("telemetry")
async def telemetry(profile: Profile) -> list[Row]:
    """``telemetry_rounds`` rounds; in each, every variant runs ``step_runs`` runs of
    ``step_calls`` sequential ``ctx.llm`` calls on its own fresh worker."""
    runs, calls, rounds = profile.step_runs, profile.step_calls, profile.telemetry_rounds
    samples: dict[str, list[Sample]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        shift = r % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            samples[variant].append(await _measure(variant, runs, calls))
    per_run = runs * calls
    note = f"{rounds} rounds x {runs} runs x {calls} calls, variants interleaved, medians"
    rows: list[Row] = []
    for variant in VARIANTS:
        mine = samples[variant]
        overheads = [us for s in mine for us in s.overheads_us]
        rate = statistics.median(per_run / s.wall_s for s in mine)
        case = f"otel={variant}"
        spans = sum(s.spans for s in mine) / (rounds * (runs * calls + 2))  # +2: the warm-up
        rate_note = note if variant == OFF else f"{spans:.1f} spans per model call, dropped"
        rows += [
            Row("telemetry", f"{case}: model calls/s", rate, "1/s", rate_note),
            Row("telemetry", f"{case}: step overhead p50", percentile(overheads, 50), "us"),
            Row("telemetry", f"{case}: step overhead p99", percentile(overheads, 99), "us"),
        ]
        if variant != OFF:
            paired = list(zip(samples[OFF], mine, strict=True))
            extra = statistics.median((s.wall_s / o.wall_s - 1) * 100 for o, s in paired)
            extra_us = statistics.median((s.wall_s - o.wall_s) / per_run * 1e6 for o, s in paired)
            ratio_note = "wall time per call vs off in the same round"
            rows += [
                Row("telemetry", f"{case}: overhead vs off", extra, "%", ratio_note),
                Row("telemetry", f"{case}: extra per call", extra_us, "us"),
            ]
    return rows


async def _measure(variant: str, runs: int, calls: int) -> Sample:
    model = TimedModel()
    telemetry, spans, metrics = _telemetry(variant)
    gc.collect()  # each variant starts without the garbage of the previous one
    try:
        with scratch_dir() as data:
            async with running_worker(bench_app(model), data, telemetry=telemetry) as h:
                wall, overheads = await sequential_runs(h, model, runs, calls)
    finally:
        telemetry.flush(shutdown=True)  # stops the SDK's threads, outside the measurement
    if telemetry.enabled and (not spans.spans or "wakeline.steps" not in metrics.names):
        raise RuntimeError(f"otel={variant}: nothing exported ({spans.spans} spans)")
    return Sample(wall, overheads, spans.spans)


def _telemetry(variant: str) -> tuple[Telemetry, DropSpans, DropMetrics]:
    """The worker's telemetry for ``variant`` and the exporters it feeds (none when off)."""
    spans, metrics = DropSpans(), DropMetrics()
    if variant == OFF:
        return Telemetry(capture_content=False), spans, metrics
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    reader = PeriodicExportingMetricReader(metrics)  # the SDK's default interval (60 s)
    meter_provider = MeterProvider([reader], shutdown_on_exit=False)
    capture = variant == "on+content"
    return Telemetry(tracer_provider, meter_provider, capture_content=capture), spans, metrics
