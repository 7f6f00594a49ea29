"""Partition owners on both backends, in the shape a worker meets them (issue #10, point 3).

* a transient append failure on a start command neither dead-letters the start nor leaves a
  dead actor behind: the partition restarts, reads the command again, the run completes once;
* a command arriving right behind a run's final event is answered, and the worker goes on
  serving its partitions (a command future left pending would stall all of them);
* a shared-budget wake and a ``resume`` command for the same waiting run resume it once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from backends import Backend, backend_for, backend_params, runtime_for
from governed_agents import make_app as governed_app

from wakeline import App, Context
from wakeline.client import Client
from wakeline.ledger import Ledger
from wakeline.providers.mock import MockModel
from wakeline.replay import read_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import Event
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.harness import LocalRuntime, worker_running
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import Log, LogUnavailableError, OffsetCommit, OutRecord, PartitionWriter
from wakeline.topics.specs import Topics

Runtime = Callable[[App], AbstractAsyncContextManager[LocalRuntime]]


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return backend_for(request, tmp_path / "data", "owner")


@pytest.fixture(params=backend_params())
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Runtime:
    """An in-process worker of an app and a client, on the embedded log or on Kafka."""
    return lambda app: runtime_for(request, app, tmp_path / "data", "owner")


@pytest.fixture()
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as s:
        yield s


def _app() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())

    async def ask(ctx: Context, q: str) -> str:
        return (await ctx.llm(q)).text

    async def pay(ctx: Context, amount: int) -> bool:
        return (await ctx.approval("pay", {"amount": amount})).approved

    app.agent(ask, name="ask")
    app.agent(pay, name="pay")
    return app


async def journal(log: Log, topics: Topics, run_id: str) -> list[Event]:
    """The run's journal as it stands (does not wait for the run to end)."""
    codec = event_codec()
    return [codec.decode(raw) for raw in await read_journal(log, run_id, topics=topics)]


async def until(client: Client, run_id: str, event_type: str) -> None:
    seen: list[str] = []

    async def first() -> None:
        async for event in client.events(run_id):
            if event.type == event_type:
                return
            seen.append(f"{event.type} {event.payload}")
        raise AssertionError(f"{run_id} ended without {event_type}: " + "; ".join(seen))

    await asyncio.wait_for(first(), 60)


def same_partition(run_id: str, partitions: int, n: int) -> list[str]:
    """``n`` new run ids on the partition of ``run_id``."""
    target = partition_for(run_id.encode(), partitions)
    ids = (f"{run_id}-{i}" for i in itertools.count())
    return list(
        itertools.islice((r for r in ids if partition_for(r.encode(), partitions) == target), n)
    )


class FlakyWriter:
    """A real writer whose first append carrying ``type`` fails before anything is written."""

    def __init__(self, inner: PartitionWriter, fail_on: bytes, failures: list[int]) -> None:
        self._inner, self._fail_on, self._failures = inner, fail_on, failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def append(
        self, topic: str, records: Sequence[OutRecord], *, commit: OffsetCommit | None = None
    ) -> list[int]:
        if not self._failures and any(("type", self._fail_on) in r.headers for r in records):
            self._failures.append(1)
            raise LogUnavailableError("injected: the log is briefly unreachable")
        return await self._inner.append(topic, records, commit=commit)


class FlakyLog:
    def __init__(self, inner: Log, fail_on: bytes) -> None:
        self._inner, self._fail_on = inner, fail_on
        self.failures: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def writer(self, writer_id: str, partition: int) -> FlakyWriter:
        inner = await self._inner.writer(writer_id, partition)
        return FlakyWriter(inner, self._fail_on, self.failures)


async def test_a_transient_failure_on_a_start_reads_the_start_again(
    backend: Backend, tmp_path: Path
) -> None:
    inner = await backend.create(partitions=1)
    log = FlakyLog(inner, b"RunStarted")
    try:
        async with worker_running(
            _app(),
            log,
            tmp_path / "state",
            topics=backend.topics,
            group=backend.group,  # type: ignore[arg-type]
        ):
            client = Client(inner, topics=backend.topics)
            await client.start_run("ask", "hello", run_id="s1")
            assert await asyncio.wait_for(client.result("s1"), 60) == "mock reply to: hello"
            assert log.failures == [1]
        events = await journal(inner, backend.topics, "s1")
        assert [e.type for e in events].count("RunStarted") == 1
        assert [e.seq for e in events] == list(range(len(events)))
        dead = await inner.read(backend.topics.deadletter, 0, 0)
        assert dead == [], "a transient log error must not dead-letter the start"
    finally:
        await inner.close()


async def test_a_command_behind_the_final_event_does_not_stall_the_worker(
    runtime: Runtime,
) -> None:
    async with runtime(_app()) as rt:
        handle = await rt.client.start_run("pay", 5)
        await until(rt.client, handle.run_id, "GateOpened")
        # back to back on the partition: the cancel lands behind the run's final event
        await rt.client.approve(handle.run_id, "pay")
        await rt.client.cancel(handle.run_id, "too late")
        assert await asyncio.wait_for(rt.client.result(handle.run_id), 60) is True
        partitions = await rt.log.partition_count(rt.topics.events)
        same = same_partition(handle.run_id, partitions, 3)
        for i, run_id in enumerate(same):  # the partition's owner still serves it
            await rt.client.start_run("ask", f"still serving {i}?", run_id=run_id)
            reply = await asyncio.wait_for(rt.client.result(run_id), 60)
            assert reply == f"mock reply to: still serving {i}?"
        types = [e.type for e in await journal(rt.log, rt.topics, handle.run_id)]
        assert types[-1] == "RunCompleted" and "RunCancelled" not in types


async def test_a_budget_wake_and_a_resume_command_resume_a_run_once(
    runtime: Runtime, server: FakeLLMServer, tmp_path: Path
) -> None:
    async with runtime(governed_app(server.openai_base_url, tmp_path)) as rt:
        ledger = Ledger(rt.log, rt.topics.ledger, writer="test")
        await ledger.set_limit("tenant:acme", Decimal("0.000001"), "test")
        handle = await rt.client.start_run("spender", 1, tenant="acme")
        await until(rt.client, handle.run_id, "BudgetExceeded")
        assert server.received == 0  # denied before dispatch
        await asyncio.gather(  # the wake and the command race for the same waiting run
            ledger.set_limit("tenant:acme", Decimal(10), "test"),
            rt.client.resume(handle.run_id),
        )
        assert await asyncio.wait_for(rt.client.result(handle.run_id), 60) == 1
        events = await journal(rt.log, rt.topics, handle.run_id)
    assert [e.seq for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types.count("ModelCallCompleted") == 1 and types.count("RunCompleted") == 1
    assert server.received == 1, "the run was resumed once: its call was sent once"
