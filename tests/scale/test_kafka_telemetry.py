"""One trace per run on Kafka: a worker SIGKILLed mid-run, the run finished by another worker.

The first worker is a process that writes each span to a file as it ends (so its spans outlive
the kill); the second runs in this process with the SDK's in-memory exporter.  Together they
must give one trace, every model call in exactly one ``chat`` span, one ``invoke_agent`` root,
Kafka ``send``/``process`` spans with the messaging attributes, and a ``traceparent`` header
on every event record that names the run's trace.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import pytest
from fleet import Fleet, all_events, check_journal
from kafka_agents import CALLS, make_app, topics_for
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from wakeline.client import Client
from wakeline.runtime import ensure_topics
from wakeline.schemas.events import ModelCallCompleted
from wakeline.telemetry.runtime import Telemetry, run_root_span_id, run_trace_id
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.harness import worker_running
from wakeline.testing.kafka_broker import KafkaBroker
from wakeline.testing.span_file import as_json, read_spans
from wakeline.testing.worker_process import SPANS_ENV as SPANS
from wakeline.topics.kafka.log import KafkaLog
from wakeline.topics.port import Record

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

KILL_AFTER = 4
"""Model calls completed (and journaled) before the first worker is killed."""


def named(spans: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"].startswith(prefix)]


async def test_a_run_killed_on_one_worker_and_finished_on_another_is_one_trace(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    prefix = f"otel{os.getpid()}{random.randrange(10**6)}"
    topics = topics_for(prefix)
    log = await KafkaLog.open(kafka_broker.bootstrap)
    await ensure_topics(log, partitions=1, topics=topics)
    server = FakeLLMServer(latency_s=0.5).start()
    fleet = Fleet(kafka_broker.bootstrap, server.openai_base_url, prefix, tmp_path, session_s=3.0)
    span_file = tmp_path / "first.spans.jsonl"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    run_id = f"{prefix}-run"
    try:
        fleet.start("first", env={SPANS: str(span_file)})
        client = Client(log, topics=topics)
        await client.start_run("tenstep", "moss", run_id=run_id)
        # the call after KILL_AFTER completed ones has reached the server: kill while it waits
        assert await asyncio.to_thread(server.wait, received=KILL_AFTER + 1, timeout=60)
        fleet.kill("first")
        async with worker_running(
            make_app(server.openai_base_url),
            log,
            tmp_path / "second",
            session_timeout_s=3.0,
            topics=topics,
            telemetry=Telemetry(provider),
        ):
            await asyncio.wait_for(client.result(run_id), 120)
        events = (await all_events(log, topics.events))[run_id]
        records: list[Record] = []
        while len(records) < len(events):
            offset = records[-1].offset + 1 if records else 0
            records += await log.read(topics.events, 0, offset, timeout_s=1.0)
    finally:
        fleet.stop_all()
        server.stop()
        await log.close()

    check_journal(run_id, events, CALLS)
    first = read_spans(span_file)
    second = [as_json(s) for s in exporter.get_finished_spans()]
    trace_id, root_id = run_trace_id(run_id), run_root_span_id(run_id)
    assert {s["trace_id"] for s in first + second} == {trace_id}

    # every model call in exactly one chat span; the call in flight at the kill is in the
    # second worker's (the first never ended its span)
    completed = sorted(e.payload.step for e in events if isinstance(e.payload, ModelCallCompleted))
    chats = named(first, "chat ") + named(second, "chat ")
    assert sorted(s["attributes"]["wakeline.seq"] for s in chats) == completed
    assert len(named(first, "chat ")) == KILL_AFTER
    assert len(named(second, "chat ")) == CALLS - KILL_AFTER
    for chat in chats:
        a = chat["attributes"]
        assert chat["parent_span_id"] == root_id and chat["kind"] == "CLIENT"
        assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.request.model"] == "gpt-4o-mini"
        assert a["gen_ai.response.id"] and a["gen_ai.usage.input_tokens"] > 0

    [root] = named(first + second, "invoke_agent")
    assert root in second and root["span_id"] == root_id and root["parent_span_id"] is None
    assert root["attributes"]["wakeline.outcome"] == "completed"

    [process] = named(first, "process ")  # the start command, consumed by the first worker
    assert process["kind"] == "CONSUMER" and process["parent_span_id"] == root_id
    assert process["attributes"]["messaging.system"] == "kafka"
    assert process["attributes"]["messaging.destination.name"] == topics.commands
    assert process["attributes"]["messaging.consumer.group.name"] == fleet.group
    sends = named(first, "send ") + named(second, "send ")
    assert {s["attributes"]["messaging.system"] for s in sends} == {"kafka"}
    assert {s["attributes"]["messaging.destination.partition.id"] for s in sends} == {"0"}
    send_ids = {s["span_id"] for s in sends}
    assert len(records) == len(events)  # (no record after the terminal event)
    for record in records:
        header = record.header("traceparent")
        assert header is not None
        _, tid, sid, _ = header.decode().split("-")
        assert int(tid, 16) == trace_id and int(sid, 16) in send_ids
