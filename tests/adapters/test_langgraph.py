"""A plain LangGraph ``StateGraph`` on wakeline: its chat model wrapped in ``DurableChatModel``,
its ``ToolNode`` given the middleware's tool hook, an ``interrupt()`` node before the tools.

Each model call is a journaled, priced wakeline model call; the interrupt is a wakeline gate
(the run id is the graph's thread); after a crash and the decision no journaled request is sent
again, the tool runs once with the run's idempotency key, and the journal replays byte for
byte with no provider."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import interrupt

from wakeline import App, Context, current_tool_call, jsonutil
from wakeline.adapters.langchain import DurableChatModel, WakelineMiddleware, ainvoke
from wakeline.core import activation as act
from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    GateOpened,
    GateResolved,
    ModelCallCompleted,
    ModelCallRequested,
    RunCompleted,
    RunStarted,
    ToolCallRequested,
)
from wakeline.testing import CoreDriver
from wakeline.testing.fake_llm import FakeLLMServer

KEYS: list[str] = []


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@tool
def charge(n: int) -> str:
    """Charge the card n times."""
    KEYS.append(current_tool_call().idempotency_key)
    return f"charged {n}"


def make_graph(base_url: str) -> Any:
    inner = ChatOpenAI(model="gpt-4o-mini", base_url=base_url, api_key="test-key", max_retries=0)
    model = DurableChatModel(inner=inner).bind_tools([charge])

    async def think(state: State) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    async def review(state: State) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        decision = interrupt({"calls": [c["args"] for c in last.tool_calls]})
        return {} if decision["approved"] else {"messages": [HumanMessage("do not charge")]}

    async def after_think(state: State) -> str:
        last = state["messages"][-1]
        return "review" if isinstance(last, AIMessage) and last.tool_calls else END

    # nodes and edges are async: on wakeline's agent loop there are no threads to run sync ones
    graph = StateGraph(State)
    graph.add_node("think", think)
    graph.add_node("review", review)
    hook = WakelineMiddleware().awrap_tool_call
    graph.add_node("tools", ToolNode([charge], awrap_tool_call=hook))
    graph.add_edge(START, "think")
    graph.add_conditional_edges("think", after_think, ["review", END])
    graph.add_edge("review", "tools")
    graph.add_edge("tools", "think")
    return graph.compile()


def make_app(base_url: str) -> App:
    graph = make_graph(base_url)
    app = App()

    @app.agent
    async def billing(ctx: Context, prompt: str) -> str:
        state = await ainvoke(ctx, graph, {"messages": [HumanMessage(prompt)]})
        return str(state["messages"][-1].content)

    return app


async def test_a_state_graph_is_journaled_gated_resumed_and_replayed(
    server: FakeLLMServer,
) -> None:
    KEYS.clear()
    core = CoreDriver("lg-1", make_app(server.openai_base_url), always_replay=True)
    await core.drive(core.start(RunStarted("billing", jsonutil.dumps("charge the card"))))
    assert isinstance(core.status, act.WaitingOnPeople), core.status
    [gate] = [e for e in core.journal if isinstance(e.payload, GateOpened)]
    assert isinstance(gate.payload, GateOpened)
    assert jsonutil.loads(gate.payload.payload) == {"calls": [{"n": 1}]}
    assert server.received == 1 and KEYS == []

    fresh = core.crash(app=make_app(server.openai_base_url))  # a new process, the journal only
    assert isinstance((await fresh.drive(fresh.recover())).status, act.WaitingOnPeople)
    await fresh.drive(fresh.deliver(GateResolved(gate.seq, True, "alice")))
    terminal = fresh.terminal.payload if fresh.terminal else None
    assert isinstance(terminal, RunCompleted), fresh.status
    assert jsonutil.loads(terminal.output).startswith("fake reply #2")

    payloads = [e.payload for e in fresh.journal]
    calls = [p for p in payloads if isinstance(p, ModelCallRequested)]
    assert [(c.provider, c.model) for c in calls] == [("openai", "gpt-4o-mini")] * 2
    request = jsonutil.loads(calls[0].request)
    assert [t["function"]["name"] for t in request["tools"]] == ["charge"]
    assert all("id" not in m["data"] for m in request["messages"])
    done = [p for p in payloads if isinstance(p, ModelCallCompleted)]
    assert all(c.cost_usd is not None and c.cost_usd > Decimal(0) for c in done)
    [tool_call] = [p for p in payloads if isinstance(p, ToolCallRequested)]
    assert [tool_call.idempotency_key] == KEYS
    digests = [r.digest for r in server.requests()]
    assert len(digests) == len(set(digests)) == 2  # the call before the gate was not resent

    raw = [event_codec().encode(e) for e in fresh.journal]
    report = replay_journal(make_app("http://127.0.0.1:9/unreachable"), "lg-1", raw)
    assert report.identical and report.ended
    assert server.received == 2 and len(KEYS) == 1


async def test_outside_a_wakeline_run_the_wrapped_model_is_the_model(
    server: FakeLLMServer,
) -> None:
    inner = ChatOpenAI(
        model="gpt-4o-mini", base_url=server.openai_base_url, api_key="k", max_retries=0
    )
    answer = await DurableChatModel(inner=inner).ainvoke("hello")
    assert str(answer.content).startswith("fake reply #1") and server.received == 1
