"""A LangChain agent's interrupts as wakeline gates: ``HumanInTheLoopMiddleware`` stops the
agent before a tool runs, the run waits on a durable approval gate, and the decision --
approve, or reject with a reason -- is what the agent resumes with.  The model call before
the gate is never sent again, and the journal replays byte for byte with no provider."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from wakeline import App, Context, jsonutil
from wakeline.adapters.langchain import WakelineMiddleware, ainvoke
from wakeline.core import activation as act
from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    GateOpened,
    GateResolved,
    RunCompleted,
    RunStarted,
    ToolCallRequested,
)
from wakeline.testing import CoreDriver
from wakeline.testing.fake_llm import FakeLLMServer

REFUNDS: list[int] = []


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@tool
def refund(n: int) -> str:
    """Refund n euros."""
    REFUNDS.append(n)
    return f"refunded {n}"


def make_app(base_url: str) -> App:
    model = ChatOpenAI(model="gpt-4o-mini", base_url=base_url, api_key="test-key", max_retries=0)
    review = HumanInTheLoopMiddleware(interrupt_on={"refund": True})
    agent = create_agent(model, [refund], middleware=[review, WakelineMiddleware()])
    app = App()

    @app.agent
    async def refunds(ctx: Context, prompt: str) -> list[str]:
        state = await ainvoke(ctx, agent, {"messages": [{"role": "user", "content": prompt}]})
        return [str(m.content) for m in state["messages"] if isinstance(m, ToolMessage)]

    return app


async def decide(server: FakeLLMServer, run_id: str, approved: bool) -> CoreDriver:
    REFUNDS.clear()
    core = CoreDriver(run_id, make_app(server.openai_base_url), always_replay=True)
    await core.drive(core.start(RunStarted("refunds", jsonutil.dumps("refund me"))))
    assert isinstance(core.status, act.WaitingOnPeople), core.status
    [gate] = [e for e in core.journal if isinstance(e.payload, GateOpened)]
    assert isinstance(gate.payload, GateOpened) and gate.payload.name == "tool:refund"
    [action] = jsonutil.loads(gate.payload.payload)["action_requests"]
    assert (action["name"], action["args"]) == ("refund", {"n": 1})
    assert server.received == 1 and REFUNDS == []  # stopped before the tool

    fresh = core.crash(app=make_app(server.openai_base_url))  # the decision, in a new process
    assert isinstance((await fresh.drive(fresh.recover())).status, act.WaitingOnPeople)
    resolved = GateResolved(gate.seq, approved, "alice", "" if approved else "too much")
    await fresh.drive(fresh.deliver(resolved))
    terminal = fresh.terminal.payload if fresh.terminal else None
    assert isinstance(terminal, RunCompleted), fresh.status
    digests = [r.digest for r in server.requests()]
    assert len(digests) == len(set(digests)) == 2  # the call before the gate was not resent
    raw = [event_codec().encode(e) for e in fresh.journal]
    report = replay_journal(make_app("http://127.0.0.1:9/unreachable"), run_id, raw)
    assert report.identical and report.ended
    return fresh


async def test_an_approved_interrupt_runs_the_tool_once(server: FakeLLMServer) -> None:
    core = await decide(server, "gate-1", approved=True)
    assert REFUNDS == [1]
    assert [e.payload.tool for e in core.journal if isinstance(e.payload, ToolCallRequested)] == [
        "refund"
    ]
    output: Any = jsonutil.loads(core.terminal.payload.output)  # type: ignore[union-attr]
    assert output == ["refunded 1"]


async def test_a_rejected_interrupt_gives_the_model_the_reason(server: FakeLLMServer) -> None:
    core = await decide(server, "gate-2", approved=False)
    assert REFUNDS == []
    assert not [e for e in core.journal if isinstance(e.payload, ToolCallRequested)]
    output: Any = jsonutil.loads(core.terminal.payload.output)  # type: ignore[union-attr]
    assert output == ["User rejected the tool call for `refund` with reason: too much"]
