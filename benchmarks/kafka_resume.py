"""Kafka: a fresh worker takes over a partition holding a run with many recorded calls.

A run records ``calls`` model calls through a worker on the broker, then waits on a one-hour
timer.  That worker leaves (its process is gone: what is left is the log, and its state
directory).  A new worker then joins; the figure is the time from the moment it is assigned
the run's partition (its ``assigned`` log line) to the run's actor running again: the journal
read from Kafka (or from the state directory it was left in), decoded and replayed.
Measured with an empty state directory (another machine) and with the old one (restarted in
place).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from benchmarks.embedded import HOUR_S
from benchmarks.harness import CHAIN, Job, TimedModel, bench_app, scratch_dir
from benchmarks.kafka import broker
from benchmarks.registry import Profile, Row, register
from wakeline.actors.worker import Worker
from wakeline.client import Client
from wakeline.core.app import App
from wakeline.runtime import ensure_topics
from wakeline.topics.chunked import ChunkedLog
from wakeline.topics.kafka.log import KafkaLog
from wakeline.topics.specs import Topics, prefixed_topics

NAME = "kafka_resume"


class _Assigned(logging.Handler):
    """The wall time of the worker's first ``assigned`` log line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.at: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.at is None and " assigned " in record.getMessage():
            self.at = record.created


@contextmanager
def _assignment() -> Iterator[_Assigned]:
    handler = _Assigned()
    logger = logging.getLogger("wakeline.actors.worker")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@register(NAME)
async def kafka_resume(profile: Profile) -> list[Row]:
    """``resume_steps`` calls (10,000 full); 300 in the quick profile (recording is slow)."""
    calls = profile.resume_steps if profile.name == "full" else 300
    topics = prefixed_topics(f"bench-resume-{time.time_ns() % 10**9}")
    app = bench_app(TimedModel())
    log = ChunkedLog(await KafkaLog.open(broker().bootstrap), topics.chunks)
    try:
        await ensure_topics(log, partitions=2, topics=topics)
        with scratch_dir() as data:
            start = time.perf_counter()
            run_id = await _record(app, log, topics, data / "state", calls)
            recorded_s = time.perf_counter() - start
            cold_ms = await _resume(app, log, topics, data / "state-cold", run_id)
            warm_ms = await _resume(app, log, topics, data / "state", run_id)
    finally:
        await log.close()
    note = f"{calls} model calls recorded ({recorded_s:.0f} s), then a one-hour timer"
    return [
        Row(NAME, "assigned -> run resumed, empty state dir", cold_ms, "ms", note),
        Row(NAME, "assigned -> run resumed, same state dir", warm_ms, "ms", "target: <= 150"),
    ]


async def _record(app: App, log: KafkaLog | ChunkedLog, topics: Topics, state: Path, n: int) -> str:
    async with _worker(app, log, topics, state) as worker:
        client = Client(log, topics=topics)
        handle = await client.start_run(CHAIN, Job(calls=n, sleep_s=HOUR_S).model_dump())
        async for event in client.events(handle.run_id, from_offset=handle.from_offset):
            if event.type == "TimerScheduled":
                break
        await client.aclose()
        assert handle.run_id in worker.running_runs
        return handle.run_id


async def _resume(
    app: App, log: KafkaLog | ChunkedLog, topics: Topics, state: Path, run_id: str
) -> float:
    with _assignment() as assigned:
        async with _worker(app, log, topics, state) as worker:
            deadline = time.monotonic() + 300
            while run_id not in worker.running_runs:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{run_id} was not resumed within 300 s")
                await asyncio.sleep(0.002)
            resumed = time.time()
    if assigned.at is None:
        raise RuntimeError("the worker logged no assignment")
    return (resumed - assigned.at) * 1000


@asynccontextmanager
async def _worker(
    app: App, log: KafkaLog | ChunkedLog, topics: Topics, state: Path
) -> AsyncIterator[Worker]:
    """A worker on ``log`` until the block exits (it then leaves the group at once)."""
    worker = Worker(app, log, state_dir=state, topics=topics, session_timeout_s=6)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task
