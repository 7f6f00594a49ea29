"""OpenTelemetry: one trace per run across workers and crashes, no duplicated spans on resume."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Tracer

from wakeline import App
from wakeline.actors.lag import LagProbe
from wakeline.actors.worker import Worker
from wakeline.client import Client
from wakeline.providers.mock import MockModel
from wakeline.runtime import ensure_topics
from wakeline.telemetry.config import configure_from_env
from wakeline.telemetry.runtime import (
    Telemetry,
    run_root_span_id,
    run_trace_id,
    traceparent,
)
from wakeline.testing.seams import observe_calls
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.port import Log, OutRecord
from wakeline.topics.specs import DEFAULT_TOPICS


def make_app() -> App:
    app = App()
    app.provider("mock", MockModel())

    @app.tool
    def lookup(topic: str) -> str:
        return f"facts about {topic}"

    @app.agent
    async def researcher(ctx: Any, topic: str) -> list[str]:
        first = await ctx.llm(f"about {topic}", max_tokens=64)
        await ctx.sleep(0.6)
        facts = await ctx.tool("lookup", topic=topic)
        second = await ctx.llm(f"more on {first.text} {facts}", max_tokens=64)
        return [first.text, second.text]

    return app


def make_telemetry() -> tuple[Telemetry, InMemorySpanExporter, InMemoryMetricReader]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    return Telemetry(tracer_provider, meters, lag_interval_s=0.1), exporter, reader


@asynccontextmanager
async def running(log: Log, state: Path, telemetry: Telemetry) -> AsyncIterator[Worker]:
    worker = Worker(make_app(), log, state_dir=state, session_timeout_s=2.0, telemetry=telemetry)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 20)
    try:
        yield worker
    finally:
        stop.set()
        await task


def named(spans: list[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    points: dict[str, list[Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    return points


async def test_a_run_is_one_trace_with_genai_spans(tmp_path: Path) -> None:
    telemetry, exporter, reader = make_telemetry()
    log = await EmbeddedLog.open(tmp_path)
    try:
        await ensure_topics(log, partitions=1)
        client = Client(log)
        tracer = telemetry_tracer(telemetry)
        async with running(log, tmp_path / "state", telemetry) as worker:
            measured = observe_calls(worker.lag, "measure")
            with tracer.start_as_current_span("submit order") as submit:
                handle = await client.start_run("researcher", "moss", tenant="acme")
            await asyncio.wait_for(client.result(handle.run_id), 20)
            # a lag measurement begun after the last command was handled: the second from now
            await measured.after(measured.count + 1)
        records = await log.read(DEFAULT_TOPICS.events, 0, 0)
    finally:
        await log.close()

    run_id = handle.run_id
    spans = [s for s in exporter.get_finished_spans() if s.name != "submit order"]
    trace_id, root_id = run_trace_id(run_id), run_root_span_id(run_id)
    assert {s.context.trace_id for s in spans} == {trace_id}

    [process] = named(spans, "process ")  # the start command, consumed by the worker
    a = attrs(process)
    assert process.name == f"process {DEFAULT_TOPICS.commands}"
    assert process.kind == SpanKind.CONSUMER
    assert process.parent is not None and process.parent.span_id == root_id
    assert a["messaging.system"] == "wakeline-embedded"
    assert a["messaging.operation.type"] == "process"
    assert a["messaging.destination.name"] == DEFAULT_TOPICS.commands
    assert a["messaging.destination.partition.id"] == "0"
    assert a["messaging.kafka.offset"] == 0
    assert a["messaging.kafka.message.key"] == run_id
    assert a["messaging.consumer.group.name"] == "wakeline-workers"
    assert a["wakeline.command"] == "StartRun"
    assert [link.context.span_id for link in process.links] == [submit.get_span_context().span_id]

    [root] = named(spans, "invoke_agent")
    assert root.name == "invoke_agent researcher"
    assert root.context.span_id == root_id and root.parent is None
    assert attrs(root)["gen_ai.operation.name"] == "invoke_agent"
    assert attrs(root)["gen_ai.agent.name"] == "researcher"
    assert attrs(root)["wakeline.run.id"] == run_id
    assert attrs(root)["wakeline.tenant"] == "acme"
    assert attrs(root)["wakeline.outcome"] == "completed"
    assert root.start_time is not None and root.end_time is not None
    assert root.end_time - root.start_time >= 500_000_000  # the run slept 0.6 s

    chats = named(spans, "chat ")
    assert len(chats) == 2
    for chat in chats:
        a = attrs(chat)
        assert chat.name == "chat mock-1"
        assert chat.parent is not None and chat.parent.span_id == root_id
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "mock"
        assert "gen_ai.system" not in a
        assert a["gen_ai.request.model"] == "mock-1"
        assert a["gen_ai.response.model"]
        assert a["gen_ai.response.id"]
        assert list(a["gen_ai.response.finish_reasons"]) == ["stop"]
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        assert "gen_ai.usage.cache_read.input_tokens" in a
        assert a["gen_ai.request.max_tokens"] == 64
        assert a["wakeline.run.id"] == run_id and a["wakeline.attempt"] == 1
        assert "gen_ai.input.messages" not in a  # content is off by default

    [tool] = named(spans, "execute_tool")
    assert attrs(tool)["gen_ai.tool.name"] == "lookup"
    assert attrs(tool)["gen_ai.operation.name"] == "execute_tool"
    assert attrs(tool)["wakeline.tool.idempotency_key"]
    assert named(spans, "timer.scheduled") and named(spans, "timer.fired")

    sends = named(spans, "send ")
    assert sends
    for send in sends:
        a = attrs(send)
        assert a["messaging.system"] == "wakeline-embedded"
        assert a["messaging.operation.type"] == "send"
        assert a["messaging.destination.name"] == DEFAULT_TOPICS.events
        assert a["messaging.kafka.message.key"] == run_id
        assert isinstance(a["messaging.kafka.offset"], int)

    send_ids = {s.context.span_id for s in sends}
    for record in records:
        header = record.header("traceparent")
        assert header is not None
        _, tid, sid, _ = header.decode().split("-")
        assert int(tid, 16) == trace_id and int(sid, 16) in send_ids
    assert traceparent(trace_id, root_id).startswith(f"00-{trace_id:032x}-")

    points = metric_points(reader)
    steps = {
        (p.attributes["kind"], p.attributes["outcome"]): p.value for p in points["wakeline.steps"]
    }
    assert steps == {("model", "ok"): 2, ("tool", "ok"): 1}
    assert [p.value for p in points["wakeline.runs"]] == [1]
    assert sum(p.value for p in points["wakeline.tokens"]) > 0
    [lag] = points["wakeline.consumer.lag"]
    assert lag.value == 0 and lag.attributes["messaging.destination.partition.id"] == "0"
    assert lag.attributes["messaging.consumer.group.name"] == "wakeline-workers"


def telemetry_tracer(telemetry: Telemetry) -> Tracer:
    provider = telemetry.tracer_provider
    assert provider is not None
    return provider.get_tracer("test")


async def test_consumer_lag_counts_the_records_not_yet_handled(tmp_path: Path) -> None:
    telemetry, _, reader = make_telemetry()
    log = await EmbeddedLog.open(tmp_path)
    try:
        await ensure_topics(log, partitions=1)
        client = Client(log)
        for _ in range(3):
            await client.start_run("researcher", "moss")
        probe = LagProbe(log, DEFAULT_TOPICS.commands, "lagging", telemetry)
        await probe.measure(frozenset({0}))
        assert probe.lag() == {0: 3}  # nothing committed, nothing handled
        probe.handled(0, 1)
        await probe.measure(frozenset({0}))
        assert probe.lag() == {0: 1}
        [point] = metric_points(reader)["wakeline.consumer.lag"]
        assert point.value == 1
        await probe.measure(frozenset())
        assert probe.lag() == {}
    finally:
        await log.close()


async def test_a_resumed_run_is_one_trace_without_duplicate_spans(tmp_path: Path) -> None:
    first, exporter1, _ = make_telemetry()
    second, exporter2, _ = make_telemetry()
    log = await EmbeddedLog.open(tmp_path)
    try:
        await ensure_topics(log, partitions=1)
        client = Client(log)
        async with running(log, tmp_path / "w1", first):
            handle = await client.start_run("researcher", "lichen", run_id="run-otel")
            async for event in client.events("run-otel"):
                if event.type == "TimerScheduled":
                    break  # worker 1 stops while the run sleeps
        assert not named(list(exporter1.get_finished_spans()), "invoke_agent")
        async with running(log, tmp_path / "w2", second):
            await asyncio.wait_for(client.result(handle.run_id), 20)
    finally:
        await log.close()

    spans1, spans2 = list(exporter1.get_finished_spans()), list(exporter2.get_finished_spans())
    spans = spans1 + spans2
    assert {s.context.trace_id for s in spans} == {run_trace_id("run-otel")}
    chats = named(spans, "chat ")
    seqs = [attrs(c)["wakeline.seq"] for c in chats]
    assert len(seqs) == 2 and len(set(seqs)) == 2  # each model call in exactly one span
    assert len(named(spans1, "chat ")) == 1 and len(named(spans2, "chat ")) == 1
    roots = named(spans, "invoke_agent")
    assert len(roots) == 1 and roots[0] in spans2
    assert roots[0].context.span_id == run_root_span_id("run-otel")
    root_id = run_root_span_id("run-otel")
    assert all(s.parent is not None and s.parent.span_id == root_id for s in chats)


def test_telemetry_is_off_by_default() -> None:
    assert not configure_from_env({}).enabled
    assert not configure_from_env({"OTEL_TRACES_EXPORTER": "none"}).enabled
    console = configure_from_env(
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none"}
    )
    assert console.enabled
    console.flush(shutdown=True)
    otlp = configure_from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "OTEL_METRICS_EXPORTER": "none"}
    )
    assert otlp.enabled
    otlp.flush(shutdown=True)
    assert configure_from_env({CAPTURE: "true"}).capture_content


CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


async def test_message_content_only_when_asked_for(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry(tracer_provider, capture_content=True)
    log = await EmbeddedLog.open(tmp_path)
    try:
        await ensure_topics(log, partitions=1)
        client = Client(log)
        async with running(log, tmp_path / "state", telemetry):
            handle = await client.start_run("researcher", "fern")
            await asyncio.wait_for(client.result(handle.run_id), 20)
    finally:
        await log.close()
    spans = list(exporter.get_finished_spans())
    chat = named(spans, "chat ")[0]
    assert "fern" in attrs(chat)["gen_ai.input.messages"]
    assert attrs(chat)["gen_ai.output.messages"]
    assert (
        attrs(named(spans, "execute_tool")[0])["gen_ai.tool.call.arguments"] == '{"topic":"fern"}'
    )


async def test_dead_letters_and_rebalances_are_counted(tmp_path: Path) -> None:
    telemetry, _, reader = make_telemetry()
    log = await EmbeddedLog.open(tmp_path)
    try:
        await ensure_topics(log, partitions=2)
        lettered = observe_calls(telemetry, "dead_letter")
        async with running(log, tmp_path / "state", telemetry):
            await log.append(DEFAULT_TOPICS.commands, [OutRecord(b"junk", b"\x00not avro")])
            await lettered.after(0)
            assert await log.end_offset(DEFAULT_TOPICS.deadletter, 0) == 1
    finally:
        await log.close()
    points = metric_points(reader)
    [dead] = points["wakeline.dead_letters"]
    assert dead.value == 1 and dead.attributes["reason"] == "undecodable command"
    assert dead.attributes["messaging.destination.name"] == DEFAULT_TOPICS.deadletter
    changes = {p.attributes["change"]: p.value for p in points["wakeline.rebalances"]}
    assert changes["assign"] == 2  # both partitions, once
