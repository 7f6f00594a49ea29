"""Kafka benchmarks: per-step latency and throughput on a real broker (loopback, acks=all,
transactions), and failover time from a worker's SIGKILL to the first step resumed elsewhere.

The broker comes from :func:`wakeline.testing.kafka_broker.start_broker` ($WAKELINE_KAFKA_BOOTSTRAP,
testcontainers, or the Apache Kafka jars).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path

from benchmarks.harness import CHAIN, Job, TimedModel, bench_app, percentile, scratch_dir
from benchmarks.registry import Profile, Row, register
from wakeline.actors.worker import Worker
from wakeline.client import Client
from wakeline.core.app import App
from wakeline.runtime import ensure_topics
from wakeline.schemas.codec import event_codec
from wakeline.testing.kafka_broker import KafkaBroker, start_broker
from wakeline.topics.kafka.log import KafkaLog
from wakeline.topics.specs import Topics

SESSION_TIMEOUT_S = 3.0


@cache
def broker() -> KafkaBroker:
    return start_broker()


def fresh_topics() -> Topics:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    return Topics(f"{prefix}.commands", f"{prefix}.events", f"{prefix}.notices", f"{prefix}.dlq")


@asynccontextmanager
async def kafka_worker(app: App, data: Path, topics: Topics) -> AsyncIterator[Client]:
    log = await KafkaLog.open(broker().bootstrap)
    try:
        await ensure_topics(log, partitions=4, topics=topics)
        worker = Worker(app, log, state_dir=data / "state", topics=topics, session_timeout_s=6)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await asyncio.wait_for(worker.ready.wait(), 60)
            async with Client(log, topics=topics) as client:
                yield client
        finally:
            stop.set()
            await task
    finally:
        await log.close()


@register("kafka_steps")
async def kafka_steps(profile: Profile) -> list[Row]:
    model = TimedModel()
    calls = max(20, profile.step_calls // 2)
    parallel = max(10, profile.parallel_runs // 5)
    with scratch_dir() as data:
        async with kafka_worker(bench_app(model), data, fresh_topics()) as client:
            await _warm_up(client, parallel)
            model.reset()
            started = time.perf_counter()
            handle = await client.start_run(CHAIN, Job(calls=calls).model_dump())
            await client.result(handle.run_id)
            sequential_s = time.perf_counter() - started
            overheads = model.overheads_us()
            started = time.perf_counter()
            handles = [
                await client.start_run(CHAIN, Job(calls=10).model_dump()) for _ in range(parallel)
            ]
            await asyncio.gather(*(client.result(h.run_id) for h in handles))
            parallel_s = time.perf_counter() - started
    note = (
        f"{broker().how} broker on loopback, acks=all, one transaction per append batch;"
        " after a warm-up"
    )
    return [
        Row("kafka_steps", "sequential: model calls/s", calls / sequential_s, "1/s", note),
        Row("kafka_steps", "step latency p50", percentile(overheads, 50), "us", f"{calls} calls"),
        Row("kafka_steps", "step latency p99", percentile(overheads, 99), "us"),
        Row(
            "kafka_steps", f"{parallel} runs x 10: model calls/s", parallel * 10 / parallel_s, "1/s"
        ),
    ]


async def _warm_up(client: Client, parallel: int) -> None:
    """A fresh broker (its JIT) and worker (its read consumers) are about twice as slow for
    their first few hundred transactions: the figures are of a warm one."""
    for _ in range(3):
        handles = [
            await client.start_run(CHAIN, Job(calls=10).model_dump()) for _ in range(parallel)
        ]
        await asyncio.gather(*(client.result(h.run_id) for h in handles))
    await client.result((await client.start_run(CHAIN, {"calls": 50})).run_id)


@register("kafka_recovery")
async def kafka_recovery(profile: Profile) -> list[Row]:
    topics_group = f"bench-recovery-{uuid.uuid4().hex[:6]}"
    log = await KafkaLog.open(broker().bootstrap)
    procs: list[subprocess.Popen[str]] = []
    with scratch_dir() as data:
        try:
            await ensure_topics(log, partitions=4)
            a, a_id = _spawn(data / "a", topics_group, procs)
            _, b_id = _spawn(data / "b", topics_group, procs)
            client = Client(log)
            handles = [await client.start_run(CHAIN, Job(calls=400).model_dump()) for _ in range(8)]
            await asyncio.sleep(SESSION_TIMEOUT_S + 3)  # both members hold partitions, runs busy
            owned_by_a = await _runs_last_written_by(log, a_id)
            killed_at_ms = time.time() * 1000
            a.send_signal(signal.SIGKILL)
            a.wait(10)
            resumed_ms = await _first_step_by(log, b_id, owned_by_a, killed_at_ms)
            for h in handles:
                await client.cancel(h.run_id)
        finally:
            for proc in procs:  # before the scratch dir (their state) goes away
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(20)
            await log.close()
    return [
        Row(
            "kafka_recovery",
            "SIGKILL -> first resumed step elsewhere",
            resumed_ms - killed_at_ms,
            "ms",
            f"session timeout {SESSION_TIMEOUT_S:g} s; {len(owned_by_a)} runs moved",
        )
    ]


def _spawn(
    state: Path, group: str, procs: list[subprocess.Popen[str]]
) -> tuple[subprocess.Popen[str], str]:
    args = [
        sys.executable,
        "-m",
        "wakeline.testing.worker_process",
        "benchmarks.recovery_agents:recovery_app()",
        "--kafka",
        broker().bootstrap,
        "--group",
        group,
        "--state-dir",
        str(state),
        "--session-timeout",
        str(SESSION_TIMEOUT_S),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    procs.append(proc)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().split()[-1]


async def _events(log: KafkaLog) -> list[tuple[str, str, int]]:
    """(run id, writer, time_ms) of every event on the default events topic."""
    out: list[tuple[str, str, int]] = []
    topic = "wakeline.events"
    for partition in range(await log.partition_count(topic)):
        offset, end = 0, await log.end_offset(topic, partition)
        while offset < end:
            records = await log.read(topic, partition, offset, max_records=5000)
            if not records:
                break
            for r in records:
                e = event_codec().decode(r.value)
                out.append((e.run_id, e.writer, e.time_ms))
            offset = records[-1].offset + 1
    return out


async def _runs_last_written_by(log: KafkaLog, writer: str) -> set[str]:
    last: dict[str, str] = {}
    for run_id, who, _ in await _events(log):
        last[run_id] = who
    return {run for run, who in last.items() if who == writer}


async def _first_step_by(log: KafkaLog, writer: str, runs: set[str], after_ms: float) -> float:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        times = [t for run, who, t in await _events(log) if who == writer and run in runs]
        later = [t for t in times if t >= after_ms]
        if later:
            return float(min(later))
        await asyncio.sleep(0.1)
    raise TimeoutError("no run moved to the surviving worker within 120 s")
