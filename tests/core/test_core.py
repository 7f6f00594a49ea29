"""The deterministic core, driven synchronously: no log, no worker, no network."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from wakeline import jsonutil
from wakeline.actors.effects import run_effect
from wakeline.core.activation import Completion, Effect, WaitingOnPeople
from wakeline.core.app import App, RetryPolicy
from wakeline.core.model import ModelRequest, ModelResponse, RetriableProviderError
from wakeline.providers.mock import MockModel
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    Event,
    ModelCallInterrupted,
    ModelCallRequested,
    RunCompleted,
    RunFailed,
    RunStarted,
    TimerFired,
    ToolCallRequested,
    ValueRecorded,
)
from wakeline.schemas.usage import Usage
from wakeline.testing import CoreDriver, ReplayMismatch


class Question(BaseModel):
    topic: str


class Answer(BaseModel):
    summary: str
    facts: list[str]


def make_app() -> App:
    app = App()
    app.provider("mock", MockModel())

    @app.tool
    def lookup(term: str) -> dict[str, str]:
        return {"term": term, "definition": f"{term} is a thing"}

    @app.tool(idempotent=False)
    def charge(amount: int) -> str:
        return f"charged {amount}"

    @app.agent
    async def researcher(ctx: Any, q: Question) -> Answer:
        facts = await asyncio.gather(
            *(ctx.llm(f"fact {i} about {q.topic}", max_tokens=50) for i in range(3))
        )
        info = await ctx.tool("lookup", term=q.topic)
        summary = await ctx.llm(f"summarise {info['definition']}")
        return Answer(summary=summary.text, facts=[f.text for f in facts])

    @app.agent
    async def values(ctx: Any, n: int) -> dict[str, Any]:
        when = ctx.now()
        ident = ctx.uuid()
        roll = ctx.random()
        await ctx.sleep(0)
        return {"when": when.isoformat(), "id": str(ident), "roll": roll, "n": n}

    @app.agent
    async def payer(ctx: Any, amount: int) -> str:
        return str(await ctx.tool("charge", amount=amount))

    @app.agent
    async def sleeper(ctx: Any, n: int) -> int:
        await asyncio.sleep(1)
        return n

    return app


Order = Callable[[list[Effect]], Effect]


def first(effects: list[Effect]) -> Effect:
    return effects[0]


def last(effects: list[Effect]) -> Effect:
    return effects[-1]


async def drive(core: CoreDriver, completion: Completion, order: Order = first) -> None:
    """A tiny synchronous driver: run effects one at a time in the chosen order."""
    pending = list(completion.effects)
    while pending:
        effect = order(pending)
        pending.remove(effect)
        result = await run_effect(core.app, effect, now_ms=lambda: 0)
        pending.extend(core.deliver(result).effects)


def start(
    app: App, agent: str, value: Any, run_id: str = "run-1", *, always_replay: bool = True
) -> tuple[CoreDriver, Completion]:
    core = CoreDriver(run_id, app, always_replay=always_replay)
    return core, core.start(RunStarted(agent=agent, input=jsonutil.dumps(value)))


async def test_run_completes_and_journal_is_dense() -> None:
    core, first_step = start(make_app(), "researcher", {"topic": "otters"})
    assert [type(e.payload) for e in first_step.events] == [RunStarted] + [ModelCallRequested] * 3
    assert len(first_step.effects) == 3
    await drive(core, first_step, order=last)
    assert [e.seq for e in core.journal] == list(range(len(core.journal)))
    terminal = core.terminal
    assert terminal is not None and isinstance(terminal.payload, RunCompleted)
    output = jsonutil.loads(terminal.payload.output)
    assert len(output["facts"]) == 3 and output["summary"].startswith("mock reply to")


@pytest.mark.parametrize("order", [first, last])
async def test_replay_reproduces_every_event_byte_for_byte(order: Order) -> None:
    app = make_app()
    core, step = start(app, "researcher", {"topic": "otters"})
    await drive(core, step, order=order)
    replay = core.crash(writer="replayer")
    out = replay.recover()
    assert out.events == () and out.effects == () and replay.drift is None
    codec = event_codec()
    produced = {e.seq: codec.encode(e) for e in out.replayed}
    recorded = {e.seq: codec.encode(e) for e in core.journal if e.seq in produced}
    assert produced == recorded
    # three parallel model calls, the tool, the summary call and the terminal event
    kinds = [e.type for e in out.replayed]
    assert sorted(kinds) == sorted(
        ["ModelCallRequested"] * 4 + ["ToolCallRequested", "RunCompleted"]
    )
    assert replay.terminal == core.terminal


async def test_recorded_values_are_returned_on_replay() -> None:
    app = make_app()
    core, step = start(app, "values", 7)
    await drive(core, step)
    kinds = [e.payload.kind for e in core.journal if isinstance(e.payload, ValueRecorded)]
    assert kinds == ["CLOCK", "UUID", "RANDOM"]
    again = CoreDriver("run-1", app, journal=core.journal, entropy=lambda n: b"\xff" * n)
    again.recover()
    assert again.terminal == core.terminal


async def test_changed_code_raises_nondeterminism_and_leaves_journal() -> None:
    app = make_app()
    core, step = start(app, "researcher", {"topic": "otters"})
    await drive(core, step)
    journal = list(core.journal)

    changed = make_app()
    del changed.agents["researcher"]
    del changed.agent_versions[("researcher", "")]

    @changed.agent(name="researcher")
    async def researcher_v2(ctx: Any, q: Question) -> Answer:
        await ctx.llm(f"a different prompt about {q.topic}")
        return Answer(summary="", facts=[])

    replay = core.crash(app=changed)
    out = replay.recover()
    assert replay.drift is not None
    drift = replay.drift.error
    assert drift.seq == 1
    assert "mock/mock-1" in drift.recorded and "mock/mock-1" in drift.requested
    assert out.events == () and out.effects == ()
    assert replay.journal == journal


async def test_recovery_resends_open_calls_and_continues_live() -> None:
    app = make_app()
    core, step = start(app, "researcher", {"topic": "otters"})
    await drive(core, step)
    journal = list(core.journal)
    # crash right after the three requests were journaled: all three are open; each is closed
    # as interrupted (it may have been billed) and sent again as its second attempt
    cut = CoreDriver("run-1", app, journal=journal[:4], writer="w2")
    out = cut.recover()
    assert [e.type for e in out.events] == ["ModelCallInterrupted", "ModelCallRequested"] * 3
    interrupted = [e.payload for e in out.events if isinstance(e.payload, ModelCallInterrupted)]
    assert [(p.step, p.attempt) for p in interrupted] == [(1, 1), (2, 1), (3, 1)]
    assert [e.seq for e in out.effects] == [5, 7, 9]
    assert [e.interrupted for e in out.effects] == [(1,), (2,), (3,)]
    resent = [e.request.payload for e in out.effects]
    assert [p.attempt for p in resent if isinstance(p, ModelCallRequested)] == [2, 2, 2]
    assert [p.request_digest for p in resent] == [
        e.payload.request_digest for e in journal[1:4] if isinstance(e.payload, ModelCallRequested)
    ]
    # crash after the first result was journaled: two open calls are re-sent, nothing new
    cut = CoreDriver("run-1", app, journal=journal[:5], writer="w2", always_replay=True)
    out = cut.recover()
    assert [e.interrupted for e in out.effects] == [(2,), (3,)]
    await drive(cut, out)
    assert cut.terminal is not None and cut.terminal.payload == core.terminal.payload  # type: ignore[union-attr]
    assert cut.last is not None
    assert cut.last.spent["model_calls"] == 6  # four completed calls and two interrupted


async def test_open_non_idempotent_tool_is_in_doubt_not_rerun() -> None:
    app = make_app()
    core, step = start(app, "payer", 12)
    assert isinstance(step.events[-1].payload, ToolCallRequested)
    assert step.events[-1].payload.idempotency_key == "run-1:1"
    out = core.crash().recover()
    assert out.effects == () and [e.seq for e in out.in_doubt] == [1]
    assert [e.type for e in out.events] == ["ToolCallInDoubt"]
    assert isinstance(out.status, WaitingOnPeople)
    assert [e.seq for e in out.waiting] == [1]


async def test_bad_input_and_unknown_agent_fail_the_run() -> None:
    app = make_app()
    _, step = start(app, "researcher", {"nope": 1})
    assert isinstance(step.events[-1].payload, RunFailed)
    assert step.events[-1].payload.error_type == "InvalidInput"
    _core, step = start(app, "ghost", {})
    assert isinstance(step.events[-1].payload, RunFailed)
    assert (
        "ghost" in step.events[-1].payload.message
        and "researcher" in step.events[-1].payload.message
    )


async def test_asyncio_sleep_in_agent_fails_with_a_clear_error() -> None:
    _core, step = start(make_app(), "sleeper", 1)
    payload = step.events[-1].payload
    assert isinstance(payload, RunFailed) and "ctx.sleep" in payload.message


class Flaky:
    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def complete(self, request: ModelRequest, *, on_delta: Any = None) -> ModelResponse:
        self.calls += 1
        if self.calls <= self.failures:
            raise RetriableProviderError("rate limited", status_code=429)
        return ModelResponse(text="ok", usage=Usage(1, 1))


async def test_retriable_failures_are_retried_on_durable_timers() -> None:
    app = App(default_provider="flaky", retry=RetryPolicy(max_attempts=3, initial_s=0.0))
    flaky = Flaky(failures=2)
    app.provider("flaky", flaky)

    @app.agent
    async def once(ctx: Any, text: str) -> str:
        return str((await ctx.llm(text)).text)

    core, step = start(app, "once", "hi")
    await drive(core, step)
    types = [e.type for e in core.journal]
    assert types.count("ModelCallFailed") == 2 and types.count("TimerFired") == 2
    assert [
        e.payload.attempt for e in core.journal if isinstance(e.payload, ModelCallRequested)
    ] == [1, 2, 3]
    assert flaky.calls == 3
    assert isinstance(core.terminal.payload, RunCompleted)  # type: ignore[union-attr]
    assert any(isinstance(e.payload, TimerFired) for e in core.journal)


def test_events_round_trip_through_avro() -> None:
    codec = event_codec()
    event = Event("r", 0, 1, "w", RunStarted(agent="a", input="{}"))
    assert codec.decode(codec.encode(event)) == event


async def test_always_replay_catches_code_that_depends_on_hidden_state() -> None:
    app = App()
    app.provider("mock", MockModel())
    counter = itertools.count()

    @app.agent
    async def leaky(ctx: Any, n: int) -> str:
        first = await ctx.llm(f"first {next(counter)}")  # differs when replayed from scratch
        await ctx.llm("second")
        return str(first.text)

    core = CoreDriver("r", app, always_replay=True)
    out = core.start(RunStarted("leaky", "1"))
    result = await run_effect(app, out.effects[0], now_ms=lambda: 0)
    with pytest.raises(ReplayMismatch, match="replaying 2 events changed the run"):
        core.deliver(result)


async def test_a_sync_function_handed_to_an_executor_runs_inline_in_agent_code() -> None:
    app = App()

    def boom() -> None:
        raise ValueError("from the sync function")

    @app.agent
    async def threaded(ctx: Any, n: int) -> list[Any]:
        total = await asyncio.to_thread(sum, range(n))  # e.g. a framework's sync node
        try:
            await asyncio.get_running_loop().run_in_executor(None, boom)
        except ValueError as exc:
            return [total, str(exc)]
        return [total]

    core, step = start(app, "threaded", 4)
    await drive(core, step)
    terminal = core.terminal.payload if core.terminal else None
    assert isinstance(terminal, RunCompleted), core.status
    assert jsonutil.loads(terminal.output) == [6, "from the sync function"]
