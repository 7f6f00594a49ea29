"""Faults on real Kafka: a paused zombie worker, a broker restart, replay of Kafka-recorded runs."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fleet import Fleet, all_events, check_journal
from kafka_agents import CALLS, make_app, topics_for

from wakeline.client import Client
from wakeline.replay import replay_run
from wakeline.runtime import ensure_topics
from wakeline.schemas.events import ModelCallCompleted, ModelCallRequested, RunStarted
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.harness import worker_running
from wakeline.testing.kafka_broker import KafkaBroker, start_broker
from wakeline.testing.waits import wait_for_event
from wakeline.topics.kafka.log import KafkaLog
from wakeline.topics.specs import Topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def unique_prefix(name: str) -> str:
    return f"{name}{os.getpid()}{random.randrange(10**6)}"


def no_resend_after_journaling(runs: dict[str, list], requests: list) -> None:  # type: ignore[type-arg]
    completed_at: dict[str, float] = {}
    for events in runs.values():
        by_seq = {e.seq: e.payload for e in events}
        for e in events:
            if isinstance(e.payload, ModelCallCompleted):
                req = by_seq[e.payload.step]
                assert isinstance(req, ModelCallRequested)
                completed_at[json.loads(req.request)["messages"][-1]["content"]] = e.time_ms / 1000
    for r in requests:
        prompt = r.body["messages"][-1]["content"]
        assert r.received_at <= completed_at[prompt] + 0.001, f"{prompt} sent after journaling"


async def _kafka(broker: KafkaBroker, topics: Topics, partitions: int) -> KafkaLog:
    log = await KafkaLog.open(broker.bootstrap)
    await ensure_topics(log, partitions=partitions, topics=topics)
    return log


async def successor_wrote_to_every_run(client: Client, run_ids: list[str]) -> None:
    """Once every run has an event from a writer other than the one that started it."""

    async def taken_over(run_id: str) -> None:
        started = await wait_for_event(client, run_id, RunStarted, timeout_s=60)
        await wait_for_event(client, run_id, None, where=lambda e: e.writer != started.writer)

    await asyncio.gather(*(taken_over(r) for r in run_ids))


async def _wait_all(client: Client, run_ids: list[str], limit_s: float) -> list[object]:
    return await asyncio.wait_for(asyncio.gather(*(client.result(r) for r in run_ids)), limit_s)


async def test_a_paused_zombie_worker_cannot_corrupt_journals(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    prefix = unique_prefix("zombie")
    topics = topics_for(prefix)
    log = await _kafka(kafka_broker, topics, partitions=4)
    server = FakeLLMServer(latency_s=0.15).start()
    fleet = Fleet(kafka_broker.bootstrap, server.openai_base_url, prefix, tmp_path, session_s=2.0)
    try:
        zombie = fleet.start("zombie", tag_requests=True)
        client = Client(log, topics=topics)
        run_ids = [f"{prefix}-{i}" for i in range(12)]
        for run_id in run_ids:
            await client.start_run("tenstep", run_id, run_id=run_id)
        await asyncio.to_thread(server.wait, received=12, timeout=60)
        paused_at = time.time()
        zombie.send_signal(signal.SIGSTOP)  # paused mid-run, past its session timeout
        fleet.start("successor", tag_requests=True)
        await successor_wrote_to_every_run(client, run_ids)  # the zombie's writers are fenced
        woke_at = time.time()
        zombie.send_signal(signal.SIGCONT)  # wakes up with results of calls in flight
        await _wait_all(client, run_ids, 180)
        runs = await all_events(log, topics.events)
        requests = server.requests()
    finally:
        fleet.stop_all()
        server.stop()
        await log.close()
    for run_id in run_ids:
        check_journal(run_id, runs[run_id], CALLS)
    # the new owner never sends a call whose result is journaled
    no_resend_after_journaling(runs, [r for r in requests if "/successor/" in r.path])
    # after waking, the zombie may finish sends it had begun before its pause (an HTTP request
    # cannot be fenced); its old writers are fenced, so any other call it sends is one it
    # journaled under its new membership, after reopening the partition from the log
    requested_at: dict[str, list[float]] = {}
    for events in runs.values():
        for e in events:
            if isinstance(e.payload, ModelCallRequested):
                prompt = json.loads(e.payload.request)["messages"][-1]["content"]
                requested_at.setdefault(prompt, []).append(e.time_ms / 1000)
    late = [r for r in requests if "/zombie/" in r.path and r.received_at > woke_at]
    rejoined = []
    for r in late:
        prompt = r.body["messages"][-1]["content"]
        if any(t <= paused_at + 0.001 for t in requested_at[prompt]):
            continue  # in flight before the pause
        assert any(woke_at <= t <= r.received_at + 0.001 for t in requested_at[prompt]), (
            f"zombie sent {prompt} after waking without journaling it first"
        )
        rejoined.append(r)
    no_resend_after_journaling(runs, rejoined)
    assert "fenced" in fleet.output("zombie").lower(), fleet.output("zombie")[-3000:]
    print(f"the zombie sent {len(rejoined)} calls under its new membership")


@pytest.fixture()
async def own_broker(tmp_path: Path) -> AsyncIterator[KafkaBroker]:
    broker = await asyncio.to_thread(start_broker, workdir=tmp_path / "broker")
    if broker.how != "jars":
        broker.stop()
        pytest.fail(f"this test restarts its own broker process; got {broker.how}")
    yield broker
    await asyncio.to_thread(broker.stop)


async def test_broker_restart_mid_run_loses_no_acknowledged_event(
    own_broker: KafkaBroker, tmp_path: Path
) -> None:
    topics = topics_for(unique_prefix("restart"))
    log = await _kafka(own_broker, topics, partitions=2)
    client = Client(log, topics=topics)
    with FakeLLMServer(latency_s=0.2) as server:
        app = make_app(server.openai_base_url)
        async with worker_running(app, log, tmp_path / "w", session_timeout_s=6, topics=topics):
            run_ids = [f"restart-{i}" for i in range(3)]
            for run_id in run_ids:
                await client.start_run("tenstep", run_id, run_id=run_id)
            await asyncio.to_thread(server.wait, completed=6, timeout=60)
            acknowledged = await all_events(log, topics.events)
            t0 = time.monotonic()
            await asyncio.to_thread(own_broker.restart)
            restarted_in = time.monotonic() - t0
            await _wait_all(client, run_ids, 180)
        runs = await all_events(log, topics.events)
    await log.close()
    for run_id in run_ids:
        check_journal(run_id, runs[run_id], CALLS)
        kept = acknowledged.get(run_id, [])
        assert runs[run_id][: len(kept)] == kept  # every acknowledged event, unchanged
    print(f"broker restarted in {restarted_in:.1f}s; runs completed")


async def test_runs_recorded_on_kafka_replay_byte_identically(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    topics = topics_for(unique_prefix("replay"))
    log = await _kafka(kafka_broker, topics, partitions=3)
    client = Client(log, topics=topics)
    with FakeLLMServer() as server:
        app = make_app(server.openai_base_url)
        async with worker_running(app, log, tmp_path / "w", session_timeout_s=6, topics=topics):
            run_ids = [f"replay-{i}" for i in range(4)]
            for run_id in run_ids:
                await client.start_run("tenstep", run_id, run_id=run_id)
            await _wait_all(client, run_ids, 120)
        sent = server.received
        fresh_app = make_app("http://127.0.0.1:9/unreachable")  # a fresh runtime, no provider
        for run_id in run_ids:
            report = await replay_run(log, fresh_app, run_id, topics=topics)
            assert report.identical and report.ended and report.checked == 1 + CALLS, report
        assert server.received == sent
    await log.close()
