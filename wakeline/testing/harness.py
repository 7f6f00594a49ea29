"""Run a worker in-process for tests: ``async with local_runtime(app, path) as rt: ...``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from wakeline.actors.worker import DEFAULT_GROUP, Worker, default_worker_id
from wakeline.client import Client
from wakeline.core.app import App
from wakeline.runtime import ensure_topics
from wakeline.telemetry.runtime import Telemetry
from wakeline.testing.waits import DEFAULT_TIMEOUT_S, RunUnloads, wait_status
from wakeline.topics.chunked import ChunkedLog
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.port import Log
from wakeline.topics.signing import RecordSigner
from wakeline.topics.specs import DEFAULT_TOPICS, Topics, prefixed_topics

__all__ = [
    "LocalRuntime",
    "kafka_runtime",
    "local_runtime",
    "wait_status",
    "worker_running",
]


@dataclass
class LocalRuntime:
    log: Log
    client: Client
    worker: Worker
    topics: Topics = DEFAULT_TOPICS
    unloads: RunUnloads | None = None
    """The runs :attr:`worker` unloaded from memory, recorded from before it started."""

    async def wait_unloaded(
        self, run_id: str, *, times: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        """Return once the worker unloaded ``run_id`` (``times`` times in all)."""
        if self.unloads is None:
            raise RuntimeError("this runtime records no unloads: give it a RunUnloads")
        await self.unloads.wait(run_id, times=times, timeout_s=timeout_s)


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
    worker_id: str | None = None,
    signer: RecordSigner | None = None,
) -> AsyncIterator[Worker]:
    """A worker of ``app`` running on ``log`` until the block exits."""
    worker = Worker(
        app,
        log,
        state_dir=state_dir,
        session_timeout_s=session_timeout_s,
        topics=topics,
        group=group,
        worker_id=worker_id,
        telemetry=telemetry,
        signer=signer,
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
    log: Log = ChunkedLog(await EmbeddedLog.open(data), DEFAULT_TOPICS.chunks)
    worker_id = default_worker_id()
    try:
        await ensure_topics(log, partitions=partitions)
        with RunUnloads(worker_id) as unloads:
            async with (
                worker_running(
                    app,
                    log,
                    data / "state",
                    session_timeout_s=session_timeout_s,
                    worker_id=worker_id,
                ) as worker,
                Client(log) as client,
            ):  # its followers stop before the log closes
                yield LocalRuntime(log, client, worker, unloads=unloads)
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
    log: Log = ChunkedLog(await KafkaLog.open(bootstrap), topics.chunks)
    worker_id = default_worker_id()
    try:
        await ensure_topics(log, partitions=partitions, topics=topics)
        with RunUnloads(worker_id) as unloads:
            async with (
                worker_running(
                    app,
                    log,
                    state / "worker",
                    session_timeout_s=session_timeout_s,
                    topics=topics,
                    group=f"{prefix}-workers",
                    worker_id=worker_id,
                ) as worker,
                Client(log, topics=topics) as client,
            ):
                yield LocalRuntime(log, client, worker, topics, unloads)
    finally:
        await log.close()
