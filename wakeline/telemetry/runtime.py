"""OpenTelemetry for wakeline: one trace per run, across workers and crashes.

Off by default (:class:`Telemetry` with no providers does nothing).  Turn it on with the
standard ``OTEL_*`` variables (:func:`configure_from_env`) or inject SDK providers.

The trace of a run is a pure function of its run id: :func:`run_trace_id` and
:func:`run_root_span_id`.  Every worker that touches the run -- before or after a crash --
parents its spans to the same ``invoke_agent {agent}`` root without reading anything; the root
itself is emitted once, by the worker that appends the run's terminal event.  Effect spans
(``chat``, ``execute_tool``, ``step``) are emitted only when the effect really runs, never for
events replayed from the journal.  See ``docs/telemetry.md``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wakeline.actors.effects import span_of, span_result
from wakeline.schemas import events as ev
from wakeline.topics.port import Record

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.sdk.trace.id_generator import IdGenerator
    from opentelemetry.trace import SpanKind, Status, StatusCode

    HAVE_OTEL = True
except ImportError:  # pragma: no cover - the ``otel`` extra is not installed
    HAVE_OTEL = False

if TYPE_CHECKING:
    from wakeline.core.activation import Effect

log = logging.getLogger(__name__)

Headers = tuple[tuple[str, bytes], ...]
SCOPE = "wakeline"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_forced_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "wakeline_forced_ids", default=None
)

JOURNAL_SPANS = {
    "TimerScheduled": "timer.scheduled",
    "TimerFired": "timer.fired",
    "GateOpened": "gate.opened",
    "GateResolved": "gate.resolved",
    "PolicyDenied": "policy.denied",
    "BudgetExceeded": "budget.exceeded",
    "BudgetRaised": "budget.raised",
    "ModelCallDenied": "budget.denied",
    "ModelCallInterrupted": "model.interrupted",
    "ToolCallInDoubt": "tool.in_doubt",
    "InDoubtResolved": "tool.in_doubt.resolved",
}
"""Journal events that become (instant) spans when they are appended live."""
_CONTENT_FIELDS = frozenset({"payload", "result", "args", "message", "input", "output"})


def _digest(prefix: str, run_id: str) -> bytes:
    return hashlib.sha256(f"{prefix}{run_id}".encode()).digest()


@functools.lru_cache(maxsize=4096)
def run_trace_id(run_id: str) -> int:
    """The run's trace id: the first 16 bytes of sha256("wakeline-trace:" + run_id)."""
    return int.from_bytes(_digest("wakeline-trace:", run_id)[:16], "big") or 1


@functools.lru_cache(maxsize=4096)
def run_root_span_id(run_id: str) -> int:
    """The span id of the run's ``invoke_agent`` root: 8 bytes of sha256("wakeline-root:"...)."""
    return int.from_bytes(_digest("wakeline-root:", run_id)[:8], "big") or 1


def traceparent(trace_id: int, span_id: int) -> str:
    """A W3C ``traceparent`` header value (sampled)."""
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def current_trace_headers() -> Headers:
    """``traceparent`` (and ``tracestate``) of the caller's current span, to stamp on a command
    record so the worker's ``process`` span links back to it; ``()`` without a current span."""
    if not HAVE_OTEL or not trace.get_current_span().get_span_context().is_valid:
        return ()
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple((k, v.encode()) for k, v in carrier.items() if k in ("traceparent", "tracestate"))


def _links(record: Record) -> list[trace.Link]:
    """A link to the producer's span named by the record's ``traceparent`` header, if any."""
    carrier = {
        name: value.decode("latin-1")
        for name, value in record.headers
        if name in ("traceparent", "tracestate")
    }
    if "traceparent" not in carrier:
        return []
    producer = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    return [trace.Link(producer)] if producer.is_valid else []


if HAVE_OTEL:

    class _RunIds(IdGenerator):
        """Ids of the SDK, except while a run's root span is created (forced ids)."""

        def __init__(self, inner: IdGenerator) -> None:
            self.inner = inner

        def generate_span_id(self) -> int:
            forced = _forced_ids.get()
            return forced[1] if forced is not None else self.inner.generate_span_id()

        def generate_trace_id(self) -> int:
            forced = _forced_ids.get()
            return forced[0] if forced is not None else self.inner.generate_trace_id()


class _Sums:
    """A monotonic sum per attribute set, reported by an observable counter when the SDK
    collects: adding on the hot path (every step) is a dict update, not an SDK call."""

    def __init__(self, meter: Any, name: str, unit: str, description: str) -> None:
        self._values: dict[tuple[tuple[str, str], ...], float] = {}
        meter.create_observable_counter(name, [self._observe], unit, description)

    def add(self, value: float, attributes: tuple[tuple[str, str], ...]) -> None:
        self._values[attributes] = self._values.get(attributes, 0) + value

    def _observe(self, options: CallbackOptions) -> list[Observation]:
        # list() copies the items in one step under the GIL: the collector's thread never
        # sees the dict change while it iterates
        return [Observation(value, dict(key)) for key, value in list(self._values.items())]


def _ignore(result: object) -> None:
    return None


class _Send:
    """What an append span gives the append: headers to stamp and a place for offsets."""

    def __init__(self, span: Any = None) -> None:
        self.span = span

    def headers(self, run_id: str) -> Headers:
        if self.span is None:
            return ()
        ctx = self.span.get_span_context()
        if ctx.trace_id != run_trace_id(run_id):  # not the span's run (or a no-op span)
            root = traceparent(run_trace_id(run_id), run_root_span_id(run_id))
            return (("traceparent", root.encode()),)
        return (("traceparent", traceparent(ctx.trace_id, ctx.span_id).encode()),)

    def appended(self, offsets: Sequence[int]) -> None:
        if self.span is not None and offsets:
            self.span.set_attribute("messaging.kafka.offset", offsets[0])


class Telemetry:
    """Traces and metrics of a worker.  Without providers every hook returns at once."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        capture_content: bool | None = None,
        lag_interval_s: float = 5.0,
    ) -> None:
        self.enabled = tracer_provider is not None or meter_provider is not None
        if capture_content is None:
            capture_content = os.environ.get(CAPTURE_ENV, "").strip().lower() == "true"
        self.capture_content = capture_content
        self.lag_interval_s = lag_interval_s
        """How often a worker measures its consumer lag (only when telemetry is on)."""
        self.tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        if not self.enabled:
            return
        if isinstance(tracer_provider, SDKTracerProvider) and not isinstance(
            tracer_provider.id_generator, _RunIds
        ):
            tracer_provider.id_generator = _RunIds(tracer_provider.id_generator)  # type: ignore[assignment]
        self._tracer = (tracer_provider or trace.NoOpTracerProvider()).get_tracer(SCOPE)
        from opentelemetry.metrics import NoOpMeterProvider

        meter = (meter_provider or NoOpMeterProvider()).get_meter(SCOPE)
        self._steps = _Sums(meter, "wakeline.steps", "{step}", "Steps run, by outcome")
        self._step_duration = meter.create_histogram(
            "wakeline.step.duration", "s", "How long a step's effect took"
        )
        self._runs = meter.create_counter("wakeline.runs", "{run}", "Runs ended, by outcome")
        self._tokens = _Sums(meter, "wakeline.tokens", "{token}", "Model tokens")
        self._cost = _Sums(meter, "wakeline.cost", "USD", "Model cost")
        self._dead_letters = meter.create_counter("wakeline.dead_letters", "{record}")
        self._rebalances = meter.create_counter("wakeline.rebalances", "{partition}")
        self._meter = meter

    # -- context ---------------------------------------------------------------------------
    @staticmethod
    def run_context(run_id: str) -> otel_context.Context:
        """A context whose parent is the run's (deterministic) root span."""
        parent = trace.SpanContext(
            run_trace_id(run_id),
            run_root_span_id(run_id),
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(parent), otel_context.Context())

    def flush(self, *, shutdown: bool = False) -> None:
        """Export what is buffered (and stop the exporters when ``shutdown``)."""
        for provider in (self.tracer_provider, self._meter_provider):
            flush = getattr(provider, "shutdown" if shutdown else "force_flush", None)
            if callable(flush):
                flush()

    # -- the log ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def send(
        self, system: str, topic: str, partition: int, events: Sequence[ev.Event], group: str = ""
    ) -> Iterator[_Send]:
        """A ``send {topic}`` producer span around an append of a run's events."""
        if not self.enabled or not events:
            yield _Send()
            return
        run_id = events[0].run_id
        attributes: dict[str, Any] = {
            "messaging.system": system,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.message.key": run_id,
            "messaging.batch.message_count": len(events),
            "wakeline.run.id": run_id,
            "wakeline.seq": events[0].seq,
        }
        if group:
            attributes["messaging.consumer.group.name"] = group
        span = self._tracer.start_span(
            f"send {topic}", self.run_context(run_id), SpanKind.PRODUCER, attributes
        )
        with trace.use_span(span, end_on_exit=True):
            yield _Send(span)

    @contextlib.contextmanager
    def process(
        self, system: str, record: Record, group: str, run_id: str, command: str
    ) -> Iterator[None]:
        """A ``process {topic}`` consumer span around the handling of one command record: a
        child of the run's root, linked to the span that sent the command (if it said)."""
        if not self.enabled:
            yield
            return
        attributes: dict[str, Any] = {
            "messaging.system": system,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.kafka.message.key": run_id,
            "messaging.consumer.group.name": group,
            "wakeline.run.id": run_id,
            "wakeline.command": command,
        }
        span = self._tracer.start_span(
            f"process {record.topic}",
            self.run_context(run_id),
            SpanKind.CONSUMER,
            attributes,
            links=_links(record),
        )
        with trace.use_span(span, end_on_exit=True):
            yield

    def observe_lag(
        self, system: str, topic: str, group: str, lag: Callable[[], Mapping[int, int]]
    ) -> None:
        """Report ``lag()`` (partition -> records not yet handled) as the gauge
        ``wakeline.consumer.lag``; the SDK calls it when it collects metrics."""
        if not self.enabled:
            return
        common = {
            "messaging.system": system,
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": group,
        }

        def observe(options: CallbackOptions) -> list[Observation]:
            return [
                Observation(n, {**common, "messaging.destination.partition.id": str(p)})
                for p, n in sorted(lag().items())
            ]

        self._meter.create_observable_gauge(
            "wakeline.consumer.lag", [observe], "{record}", "Command records not yet handled"
        )

    def dead_letter(self, topic: str, reason: str) -> None:
        if self.enabled:
            kind = reason.split(":", 1)[0][:40]
            self._dead_letters.add(1, {"messaging.destination.name": topic, "reason": kind})

    def rebalance(self, change: str, partitions: int) -> None:
        if self.enabled and partitions:
            self._rebalances.add(partitions, {"change": change})

    # -- journal events appended live -------------------------------------------------------
    def appended(self, journal: Sequence[ev.Event], events: Sequence[ev.Event]) -> None:
        """Spans for journal events just appended (never called for replayed events)."""
        if not self.enabled:
            return
        for event in events:
            name = JOURNAL_SPANS.get(event.type)
            if name is not None:
                self._instant(name, event)
            if event.is_terminal and journal and isinstance(journal[0].payload, ev.RunStarted):
                self._run_ended(journal[0], journal[0].payload, event)

    def _instant(self, name: str, event: ev.Event) -> None:
        attributes: dict[str, Any] = {"wakeline.run.id": event.run_id, "wakeline.seq": event.seq}
        for f in dataclasses.fields(event.payload):
            value = getattr(event.payload, f.name)
            if isinstance(value, str | int | bool) and (
                self.capture_content or f.name not in _CONTENT_FIELDS
            ):
                attributes[f"wakeline.{f.name}"] = value
        at = event.time_ms * 1_000_000
        span = self._tracer.start_span(
            name, self.run_context(event.run_id), attributes=attributes, start_time=at
        )
        if isinstance(event.payload, ev.PolicyDenied | ev.BudgetExceeded | ev.ModelCallDenied):
            span.set_status(Status(StatusCode.ERROR, name))
        span.end(at)

    def _run_ended(self, first: ev.Event, started: ev.RunStarted, terminal: ev.Event) -> None:
        run_id = first.run_id
        result = terminal.type.removeprefix("Run").lower()  # completed, failed, cancelled
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": started.agent,
            "gen_ai.conversation.id": run_id,
            "wakeline.run.id": run_id,
            "wakeline.tenant": started.tenant,
            "wakeline.outcome": result,
            "wakeline.events": terminal.seq + 1,
        }
        if self.capture_content:
            attributes["wakeline.input"] = started.input
            if isinstance(terminal.payload, ev.RunCompleted):
                attributes["wakeline.output"] = terminal.payload.output
        token = _forced_ids.set((run_trace_id(run_id), run_root_span_id(run_id)))
        try:
            span = self._tracer.start_span(
                f"invoke_agent {started.agent}",
                otel_context.Context(),
                SpanKind.INTERNAL,
                attributes,
                start_time=first.time_ms * 1_000_000,
            )
        finally:
            _forced_ids.reset(token)
        if isinstance(terminal.payload, ev.RunFailed):
            span.set_attribute("error.type", terminal.payload.error_type)
            span.set_status(Status(StatusCode.ERROR, terminal.payload.message))
        span.end(terminal.time_ms * 1_000_000)
        self._runs.add(1, {"gen_ai.agent.name": started.agent, "outcome": result})

    # -- effects ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def effect(self, effect: Effect, tenant: str = "") -> Iterator[Callable[[object], None]]:
        """A span around an effect that really runs (never a replayed one); call the yielded
        function with its result (the payload delivered to the run's core)."""
        described = span_of(effect, self.capture_content) if self.enabled else None
        if described is None:
            yield _ignore
            return
        kind, name, attributes = described
        attributes["wakeline.tenant"] = tenant
        client = SpanKind.CLIENT if kind == "model" else SpanKind.INTERNAL
        span = self._tracer.start_span(name, self.run_context(effect.request.run_id), client)
        span.set_attributes(attributes)
        started, outcome = time.perf_counter(), ["cancelled"]

        def record(result: object) -> None:
            outcome[0], more, error = span_result(result, self.capture_content)
            span.set_attributes(more)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error))
            if isinstance(result, ev.ModelCallCompleted):
                self._model_metrics(result)

        try:
            with trace.use_span(span, end_on_exit=False):
                yield record
        except BaseException as exc:
            outcome[0] = "error" if isinstance(exc, Exception) else "cancelled"
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, str(exc) or type(exc).__name__))
            raise
        finally:
            span.end()
            labels = {"kind": kind, "outcome": outcome[0]}
            self._steps.add(1, tuple(labels.items()))
            self._step_duration.record(time.perf_counter() - started, labels)

    def _model_metrics(self, result: ev.ModelCallCompleted) -> None:
        model = (("gen_ai.request.model", result.model), ("gen_ai.provider.name", result.provider))
        self._tokens.add(result.usage.input_tokens, (*model, ("gen_ai.token.type", "input")))
        self._tokens.add(result.usage.output_tokens, (*model, ("gen_ai.token.type", "output")))
        if result.cost_usd is not None:
            self._cost.add(float(result.cost_usd), model)


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
