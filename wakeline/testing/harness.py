"""Run a worker in-process for tests: ``async with local_runtime(app, path) as rt: ...``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from wakeline.actors.worker import Worker
from wakeline.app import App
from wakeline.client import Client
from wakeline.runtime import ensure_topics
from wakeline.telemetry import Telemetry
from wakeline.topics.embedded import EmbeddedLog
from wakeline.topics.port import Log
from wakeline.topics.specs import DEFAULT_TOPICS, Topics


@dataclass
class LocalRuntime:
    log: Log
    client: Client
    worker: Worker


@asynccontextmanager
async def worker_running(
    app: App,
    log: Log,
    state_dir: Path,
    *,
    session_timeout_s: float = 2.0,
    topics: Topics = DEFAULT_TOPICS,
    telemetry: Telemetry | None = None,
) -> AsyncIterator[Worker]:
    """A worker of ``app`` running on ``log`` until the block exits."""
    worker = Worker(
        app,
        log,
        state_dir=state_dir,
        session_timeout_s=session_timeout_s,
        topics=topics,
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
