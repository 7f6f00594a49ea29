"""Run lifecycles that drain, and log errors that restart a partition instead of losing input.

* a command queued behind a run's final event is failed (``ActorGone``), never left pending
  (a worker awaiting it would stall every partition it owns);
* a transient append failure on a start command neither dead-letters the start nor leaves a
  dead actor behind: the partition restarts, reads the command again and the run completes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from wakeline import App, Context
from wakeline.actors.core import RunCore, Transition
from wakeline.actors.run_actor import ActorGone, RunActor
from wakeline.client import Client
from wakeline.providers.base import DeltaSink, ModelRequest, ModelResponse
from wakeline.providers.mock import MockModel
from wakeline.runtime import ensure_topics
from wakeline.schemas.events import Event, RunStarted
from wakeline.telemetry import Telemetry
from wakeline.testing.harness import worker_running
from wakeline.topics.embedded import EmbeddedLog
from wakeline.topics.port import LogUnavailableError, OffsetCommit, OutRecord, PartitionWriter
from wakeline.topics.specs import DEFAULT_TOPICS


class Hanging(MockModel):
    """A model that never answers (the run stays open until a command ends it)."""

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> ModelResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class Host:
    """The least an actor needs from its owner; appends are recorded, nothing else."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.worker_id = "w"
        self.telemetry = Telemetry()
        self.ledger = None
        self.appended: list[Event] = []
        self.stopped: list[BaseException | None] = []

    def now_ms(self) -> int:
        return 0

    async def append_events(
        self, partition: int, events: list[Event], commit: OffsetCommit | None = None
    ) -> None:
        self.appended.extend(events)

    def delta_sink(self, run_id: str, seq: int) -> DeltaSink | None:
        return None

    def on_transition(self, actor: RunActor, transition: Transition) -> None:
        pass

    def actor_stopped(self, actor: RunActor, error: BaseException | None) -> None:
        self.stopped.append(error)


def _app(model: MockModel) -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", model)

    @app.agent
    async def ask(ctx: Context, q: str) -> str:
        return (await ctx.llm(q)).text

    return app


def _cancel(reason: str) -> Any:
    return lambda core: core.cancel(reason, "test", 0, "w")


async def test_a_command_queued_behind_the_final_event_is_failed_not_left_pending() -> None:
    app = _app(Hanging())
    host = Host(app)
    core = RunCore("r1", app)
    actor = RunActor(core, 0, host)  # type: ignore[arg-type]
    await actor.start(core.begin(RunStarted("ask", '"q"'), 0, "w"))
    first = actor.command(_cancel("first"), None)
    behind = actor.command(_cancel("behind"), None)  # queued behind the run's last event
    await asyncio.wait_for(first, 5)
    with pytest.raises(ActorGone):
        await asyncio.wait_for(behind, 5)
    assert host.stopped == [None] and actor.finished
    with pytest.raises(ActorGone):  # and any command after that fails at once
        await asyncio.wait_for(actor.command(_cancel("late"), None), 5)


async def test_a_command_queued_when_the_actor_is_stopped_is_failed() -> None:
    app = _app(Hanging())
    core = RunCore("r2", app)
    actor = RunActor(core, 0, Host(app))  # type: ignore[arg-type]
    await actor.start(core.begin(RunStarted("ask", '"q"'), 0, "w"))
    queued = actor.command(_cancel("queued"), None)
    await actor.stop()
    with pytest.raises(ActorGone):
        await asyncio.wait_for(queued, 5)


class FlakyWriter:
    """A real writer whose first append carrying ``type`` fails before anything is written."""

    def __init__(self, inner: PartitionWriter, fail_on: bytes, failures: list[int]) -> None:
        self._inner, self._fail_on, self._failures = inner, fail_on, failures

    @property
    def partition(self) -> int:
        return self._inner.partition

    async def append(
        self, topic: str, records: Sequence[OutRecord], *, commit: OffsetCommit | None = None
    ) -> list[int]:
        if not self._failures and any(("type", self._fail_on) in r.headers for r in records):
            self._failures.append(1)
            raise LogUnavailableError("injected: the log is briefly unreachable")
        return await self._inner.append(topic, records, commit=commit)

    async def close(self) -> None:
        await self._inner.close()


class FlakyLog:
    def __init__(self, inner: EmbeddedLog, fail_on: bytes) -> None:
        self._inner, self._fail_on = inner, fail_on
        self.failures: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def writer(self, writer_id: str, partition: int) -> FlakyWriter:
        inner = await self._inner.writer(writer_id, partition)
        return FlakyWriter(inner, self._fail_on, self.failures)


async def test_a_transient_failure_on_a_start_reads_the_start_again(tmp_path: Path) -> None:
    model = MockModel()
    app = _app(model)
    inner = await EmbeddedLog.open(tmp_path / "log")
    await ensure_topics(inner, partitions=1)
    log = FlakyLog(inner, b"RunStarted")
    async with worker_running(app, log, tmp_path / "state"):  # type: ignore[arg-type]
        client = Client(inner)
        await client.start_run("ask", "hello", run_id="s1")
        assert await asyncio.wait_for(client.result("s1"), 30) == "mock reply to: hello"
        assert log.failures == [1]
    started = [
        r
        for r in await inner.read(DEFAULT_TOPICS.events, 0, 0)
        if ("type", b"RunStarted") in r.headers
    ]
    assert len(started) == 1, "the start is appended exactly once after the retry"
    dead = await inner.read(DEFAULT_TOPICS.deadletter, 0, 0)
    assert dead == [], "a transient log error must not dead-letter the start"
    await inner.close()
