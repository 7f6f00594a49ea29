"""OpenTelemetry for wakeline: one trace per run, across workers and crashes.

Off by default (:class:`Telemetry` with no providers does nothing).  Turn it on with the
standard ``OTEL_*`` variables (:func:`wakeline.telemetry.config.configure_from_env`) or inject
SDK providers.

The trace of a run is a pure function of its run id (:mod:`wakeline.telemetry.tracing`).
Every worker that touches the run -- before or after a crash -- parents its spans to the same
``invoke_agent {agent}`` root without reading anything; the root itself is emitted once, by
the worker that appends the run's terminal event.  Effect spans (``chat``, ``execute_tool``,
``step``) are emitted only when the effect really runs, never for events replayed from the
journal.  See ``docs/telemetry.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wakeline.schemas import events as ev
from wakeline.telemetry.genai import span_of, span_result
from wakeline.telemetry.tracing import (
    HAVE_OTEL,
    Headers,
    forced_ids,
    producer_links,
    run_root_span_id,
    run_trace_id,
    traceparent,
)
from wakeline.topics.port import Record

if HAVE_OTEL:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.trace import SpanKind, Status, StatusCode

    from wakeline.telemetry.tracing import RunIds

if TYPE_CHECKING:
    from wakeline.core.activation import Effect

__all__ = [
    "CAPTURE_ENV",
    "JOURNAL_SPANS",
    "Telemetry",
    "run_root_span_id",
    "run_trace_id",
    "traceparent",
]

log = logging.getLogger(__name__)

SCOPE = "wakeline"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

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
    "ModelRouteFallback": "model.fallback",
    "ToolCallInDoubt": "tool.in_doubt",
    "InDoubtResolved": "tool.in_doubt.resolved",
}
"""Journal events that become (instant) spans when they are appended live."""
_CONTENT_FIELDS = frozenset({"payload", "result", "args", "message", "input", "output"})


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
            tracer_provider.id_generator, RunIds
        ):
            tracer_provider.id_generator = RunIds(tracer_provider.id_generator)  # type: ignore[assignment]
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
    @functools.lru_cache(maxsize=4096)
    def run_context(run_id: str) -> otel_context.Context:
        """A context whose parent is the run's (deterministic) root span (immutable, so one
        per run is kept for its next spans)."""
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
        """A ``send {topic}`` producer span around an append of a run's events.

        The span is not made current (nothing inside an append starts spans), and the
        attributes of one (system, topic, partition, group) are built once."""
        if not self.enabled or not events:
            yield _Send()
            return
        run_id = events[0].run_id
        attributes = {
            **self._send_attributes(system, topic, partition, group),
            "messaging.kafka.message.key": run_id,
            "messaging.batch.message_count": len(events),
            "wakeline.run.id": run_id,
            "wakeline.seq": events[0].seq,
        }
        span = self._tracer.start_span(
            f"send {topic}", self.run_context(run_id), SpanKind.PRODUCER, attributes
        )
        try:
            yield _Send(span)
        except BaseException as exc:  # what ``trace.use_span`` would record
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            span.end()

    @functools.lru_cache(maxsize=1024)  # noqa: B019 - one Telemetry per worker, kept alive
    def _send_attributes(
        self, system: str, topic: str, partition: int, group: str
    ) -> Mapping[str, Any]:
        attributes: dict[str, Any] = {
            "messaging.system": system,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
        }
        if group:
            attributes["messaging.consumer.group.name"] = group
        return attributes

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
            links=producer_links(record),
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
        token = forced_ids.set((run_trace_id(run_id), run_root_span_id(run_id)))
        try:
            span = self._tracer.start_span(
                f"invoke_agent {started.agent}",
                otel_context.Context(),
                SpanKind.INTERNAL,
                attributes,
                start_time=first.time_ms * 1_000_000,
            )
        finally:
            forced_ids.reset(token)
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
        run_context = self.run_context(effect.request.run_id)
        span = self._tracer.start_span(name, run_context, client, attributes)
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
