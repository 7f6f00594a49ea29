"""Run lifecycles that drain, and log errors that restart a partition instead of losing input.

* a command queued behind a run's final event is failed (``ActorGone``), never left pending
  (a worker awaiting it would stall every partition it owns);
* a transient append failure on a start command neither dead-letters the start nor leaves a
  dead actor behind: the partition restarts, reads the command again and the run completes.
"""

from __future__ import annotations

import asyncio

import pytest

from wakeline import App, Context
from wakeline.actors.run_actor import ActorGone, RunActor
from wakeline.core.activation import Activation, Cancel, Completion, Start
from wakeline.core.model import DeltaSink, ModelRequest, ModelResponse
from wakeline.core.run_core import RunCore
from wakeline.providers.mock import MockModel
from wakeline.schemas.events import Event, RunStarted
from wakeline.telemetry.runtime import Telemetry
from wakeline.topics.port import OffsetCommit


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

    def on_completion(self, actor: RunActor, completion: Completion) -> None:
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


def _cancel(reason: str) -> Cancel:
    return Cancel(reason, "test")


def _begin(core: RunCore) -> tuple[Event, Completion]:
    first = core.activate(Activation(Start(RunStarted("ask", '"q"')), 0, "w"))
    return first.events[0], first


async def test_a_command_queued_behind_the_final_event_is_failed_not_left_pending() -> None:
    app = _app(Hanging())
    host = Host(app)
    core = RunCore("r1", app)
    started, first_completion = _begin(core)
    actor = RunActor(core, started, 0, host)  # type: ignore[arg-type]
    await actor.start(first_completion)
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
    started, first_completion = _begin(core)
    actor = RunActor(core, started, 0, Host(app))  # type: ignore[arg-type]
    await actor.start(first_completion)
    queued = actor.command(_cancel("queued"), None)
    await actor.stop()
    with pytest.raises(ActorGone):
        await asyncio.wait_for(queued, 5)
