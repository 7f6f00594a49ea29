"""Shared plumbing: a timed mock model, the benchmark app, a real worker on an embedded log."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from wakeline.actors.worker import Worker
from wakeline.client import Client
from wakeline.core.app import App
from wakeline.core.context import Context
from wakeline.core.model import DeltaSink, ModelRequest, ModelResponse
from wakeline.providers.mock import MockModel
from wakeline.runtime import ensure_topics
from wakeline.telemetry.runtime import Telemetry
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.embedded.store import SyncMode
from wakeline.topics.specs import DEFAULT_TOPICS

CHAIN = "chain"
"""The benchmark agent: ``calls`` sequential ``ctx.llm`` calls, then an optional sleep."""


class TimedModel:
    """A zero-latency :class:`MockModel` that records when each call enters and how long the
    mock itself took, so the runtime's own per-step cycle can be computed."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self._inner = MockModel(latency_s=latency_s)
        self.entries_ns: list[int] = []
        self.own_ns: list[int] = []

    @property
    def name(self) -> str:
        return "mock"

    @property
    def calls(self) -> int:
        return len(self.entries_ns)

    def reset(self) -> None:
        self.entries_ns.clear()
        self.own_ns.clear()

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> ModelResponse:
        start = time.perf_counter_ns()
        self.entries_ns.append(start)
        try:
            return await self._inner.complete(request, on_delta=on_delta)
        finally:
            self.own_ns.append(time.perf_counter_ns() - start)

    def overheads_us(self) -> list[float]:
        """Per step: time between consecutive call entries minus the model's own time."""
        pairs = zip(self.entries_ns, self.entries_ns[1:], self.own_ns, strict=False)
        return [(nxt - cur - own) / 1000 for cur, nxt, own in pairs]


class Job(BaseModel):
    calls: int
    sleep_s: float = 0.0


WARM_UP = Job(calls=2)


async def chain(ctx: Context, job: Job) -> int:
    """The benchmark agent: small prompts, so a step's cost is the runtime's, not the data's."""
    for i in range(job.calls):
        await ctx.llm(f"step {i}", max_tokens=16)
    if job.sleep_s > 0:
        await ctx.sleep(job.sleep_s)
    return job.calls


def bench_app(model: TimedModel) -> App:
    app = App(name="bench", default_provider="mock", default_model="mock-1")
    app.provider("mock", model)
    app.agent(chain, name=CHAIN)
    return app


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A fresh temporary data directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="wakeline-bench-") as name:
        yield Path(name)


@dataclass(slots=True)
class Harness:
    log: EmbeddedLog
    worker: Worker
    client: Client
    started_at: float
    """``time.perf_counter()`` just before the worker's ``run()`` started."""

    async def run_to_end(self, job: Job) -> Any:
        """Start a run of the benchmark agent and wait for its result."""
        handle = await self.client.start_run(CHAIN, job.model_dump())
        return await self.client.result(handle.run_id, from_offset=handle.from_offset)

    async def events_total(self) -> int:
        """Records on every partition of the events topic."""
        topic = DEFAULT_TOPICS.events
        count = await self.log.partition_count(topic)
        ends = [await self.log.end_offset(topic, p) for p in range(count)]
        return sum(ends)


@asynccontextmanager
async def running_worker(
    app: App,
    data: Path,
    *,
    sync: SyncMode = "normal",
    state: Path | None = None,
    create: bool = True,
    telemetry: Telemetry | None = None,
) -> AsyncIterator[Harness]:
    """An embedded log in ``data/log`` and a real worker (journal store in ``state``, default
    ``data/state``; ``telemetry`` default: from the ``OTEL_*`` environment), running until the
    context exits."""
    log = await EmbeddedLog.open(data / "log", sync=sync)
    try:
        if create:
            await ensure_topics(log)
        worker = Worker(app, log, state_dir=state or data / "state", telemetry=telemetry)
        stop = asyncio.Event()
        started_at = time.perf_counter()
        task = asyncio.create_task(worker.run(stop), name="bench-worker")
        client = Client(log)
        try:
            await _until(worker.ready.wait(), task)
            yield Harness(log, worker, client, started_at)
        finally:
            await client.aclose()  # its followers stop before the log closes
            stop.set()
            await task
    finally:
        await log.close()


async def _until(awaitable: Any, worker_task: asyncio.Task[None]) -> None:
    """Await ``awaitable``, failing at once if the worker task ends first."""
    waiter = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({waiter, worker_task}, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        worker_task.result()
        raise RuntimeError("the worker stopped early")


async def sequential_runs(
    h: Harness, model: TimedModel, runs: int, calls: int
) -> tuple[float, list[float]]:
    """After a warm-up run, ``runs`` runs of ``calls`` sequential calls, one at a time: the
    seconds they took in all and every step's overhead (us, see :meth:`TimedModel.overheads_us`).
    ``model`` is the one ``h``'s worker calls."""
    await h.run_to_end(WARM_UP)
    overheads: list[float] = []
    wall = 0.0
    for _ in range(runs):
        model.reset()
        start = time.perf_counter()
        await h.run_to_end(Job(calls=calls))
        wall += time.perf_counter() - start
        overheads += model.overheads_us()
    return wall, overheads


async def poll_until(
    predicate: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.001
) -> None:
    """Poll ``predicate()`` until true (``TimeoutError`` after ``timeout_s``)."""
    deadline = time.perf_counter() + timeout_s
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


async def wait_events(h: Harness, at_least: int, *, timeout_s: float) -> None:
    """Wait until the events topic holds ``at_least`` records in all."""
    deadline = time.perf_counter() + timeout_s
    while await h.events_total() < at_least:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"fewer than {at_least} events after {timeout_s} s")
        await asyncio.sleep(0.01)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
