"""Run a worker in-process for tests: ``async with local_runtime(app, path) as rt: ...``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from wakeline.actors.worker import DEFAULT_GROUP, Worker
from wakeline.client import Client
from wakeline.core.app import App
from wakeline.projections.rows import RunRow
from wakeline.runtime import ensure_topics
from wakeline.telemetry.runtime import Telemetry
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.port import Log
from wakeline.topics.specs import DEFAULT_TOPICS, Topics, prefixed_topics


@dataclass
class LocalRuntime:
    log: Log
    client: Client
    worker: Worker
    topics: Topics = DEFAULT_TOPICS


@asynccontextmanager
async def worker_running(
    app: App,
    log: Log,
    state_dir: Path,
    *,
    session_timeout_s: float = 2.0,
    topics: Topics = DEFAULT_TOPICS,
    group: str = DEFAULT_GROUP,
    telemetry: Telemetry | None = None,
) -> AsyncIterator[Worker]:
    """A worker of ``app`` running on ``log`` until the block exits."""
    worker = Worker(
        app,
        log,
        state_dir=state_dir,
        session_timeout_s=session_timeout_s,
        topics=topics,
        group=group,
        telemetry=telemetry,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    ready = asyncio.create_task(worker.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raises the worker's startup error
    try:
        yield worker
    finally:
        stop.set()
        await task


@asynccontextmanager
async def local_runtime(
    app: App, data: Path, *, partitions: int = 4, session_timeout_s: float = 2.0
) -> AsyncIterator[LocalRuntime]:
    """An embedded log in ``data`` with topics, a running worker and a client."""
    log = await EmbeddedLog.open(data)
    try:
        await ensure_topics(log, partitions=partitions)
        async with worker_running(
            app, log, data / "state", session_timeout_s=session_timeout_s
        ) as worker:
            yield LocalRuntime(log, Client(log), worker)
    finally:
        await log.close()


@asynccontextmanager
async def kafka_runtime(
    app: App,
    bootstrap: str,
    state: Path,
    *,
    prefix: str,
    partitions: int = 2,
    session_timeout_s: float = 3.0,
) -> AsyncIterator[LocalRuntime]:
    """Like :func:`local_runtime` on a Kafka cluster: topics and a consumer group of their own
    (named after ``prefix``), a running worker and a client."""
    from wakeline.topics.kafka.log import KafkaLog

    topics = prefixed_topics(prefix)
    log = await KafkaLog.open(bootstrap)
    try:
        await ensure_topics(log, partitions=partitions, topics=topics)
        async with worker_running(
            app,
            log,
            state / "worker",
            session_timeout_s=session_timeout_s,
            topics=topics,
            group=f"{prefix}-workers",
        ) as worker:
            yield LocalRuntime(log, Client(log, topics=topics), worker, topics)
    finally:
        await log.close()


async def wait_status(
    client: Client, run_id: str, status: str, *, within_s: float = 20.0
) -> RunRow:
    """The run's row from ``client``'s views once its status is ``status``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        row = await client.get(run_id)
        if row is not None and row.status == status:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never became {status}: {await client.get(run_id)}")
