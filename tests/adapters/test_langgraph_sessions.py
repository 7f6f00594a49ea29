"""``WakelineSaver``: a plain LangGraph ``StateGraph`` compiled with it keeps its thread's state
across the turns of a wakeline session (thread = session, each invoke a turn run), with the
real langgraph and the fake server: a turn's model request carries the messages of the turns
before it, checkpointed in their journals; an ``interrupt()`` is a wakeline gate, and a turn
unloaded while it waits is rebuilt from its journal; a turn replays byte for byte."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage, HumanMessage
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt

from wakeline import App, Context
from wakeline.adapters.langchain import DurableChatModel, WakelineSaver, ainvoke, durable
from wakeline.client import Client
from wakeline.replay import replay_run
from wakeline.schemas.events import StepRequested
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.harness import local_runtime
from wakeline.testing.waits import wait_for_event

UNREACHABLE = "http://127.0.0.1:9/v1"


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    confirmed: int


def make_app(base_url: str) -> App:
    inner = ChatOpenAI(model="gpt-4o-mini", base_url=base_url, api_key="test-key", max_retries=0)
    model = DurableChatModel(inner=inner)

    async def review(state: State) -> dict[str, Any]:
        if not str(state["messages"][-1].content).startswith("confirm:"):
            return {}
        decision = interrupt({"asked": state["messages"][-1].content})
        return {"confirmed": state.get("confirmed", 0) + int(decision["approved"])}

    async def think(state: State) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(State)
    builder.add_node("review", review)
    builder.add_node("think", think)
    builder.add_edge(START, "review")
    builder.add_edge("review", "think")
    builder.add_edge("think", END)
    graph = builder.compile(checkpointer=WakelineSaver())
    app = App()

    @app.agent
    async def chat(ctx: Context, text: str) -> list[Any]:
        state = await ainvoke(ctx, graph, {"messages": [HumanMessage(text)]})
        return [len(state["messages"]), state.get("confirmed", 0)]

    @app.agent
    async def direct(ctx: Context, text: str) -> int:
        """LangGraph's own ``ainvoke`` with the session as the thread."""
        config: Any = {"configurable": {"thread_id": ctx.session.id}}
        with durable(ctx):
            state = await graph.ainvoke({"messages": [HumanMessage(text)]}, config)
        return len(state["messages"])

    return app


async def test_a_graph_thread_goes_on_across_the_turns_of_a_session(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        app = make_app(server.openai_base_url)
        async with (
            local_runtime(app, tmp_path / "data") as rt,
            Client(rt.log, views_dir=tmp_path / "views") as client,
        ):
            first = await client.start_run("chat", "my name is Ada", session="g")
            assert await client.result(first.run_id) == [2, 0]
            second = await client.start_run("chat", "confirm: I like kelp", session="g")
            await wait_for_event(client, second.run_id, "GateOpened")
            await rt.unloads.wait(second.run_id)  # nothing of it left in memory
            await client.approve(second.run_id, "interrupt", "fine")
            assert await client.result(second.run_id) == [4, 1]
            third = await client.start_run("chat", "who am I?", session="g")
            assert await client.result(third.run_id) == [6, 1]
            steps = [e.payload for e in await _events(client, third.run_id)]
            replayed = await replay_run(rt.log, make_app(UNREACHABLE), third.run_id)
    requests = server.requests()
    assert len(requests) == 3  # one model call a turn, none sent again after the unload
    seen = [(m["role"], m["content"]) for m in requests[2].body["messages"]]
    asked = ["my name is Ada", "confirm: I like kelp", "who am I?"]
    assert seen[::2] == [("user", text) for text in asked]
    assert [role for role, _ in seen] == ["user", "assistant"] * 2 + ["user"]
    assert StepRequested("session.put_item") in steps  # its checkpoints, journaled
    assert replayed.identical and replayed.ended


async def _events(client: Client, run_id: str) -> list[Any]:
    return [e async for e in client.events(run_id)]


async def test_graph_ainvoke_with_the_session_as_thread_id(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        async with (
            local_runtime(make_app(server.openai_base_url), tmp_path / "data") as rt,
            Client(rt.log, views_dir=tmp_path / "views") as client,
        ):
            counts = []
            for text in ("one", "two"):
                handle = await client.start_run("direct", text, session="d")
                counts.append(await client.result(handle.run_id))
    assert counts == [2, 4]
    second = [m["content"] for m in server.requests()[1].body["messages"]]
    assert second[0] == "one" and second[2] == "two"


def test_outside_a_run_it_is_an_in_memory_saver() -> None:
    saver = WakelineSaver()
    config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    assert saver.get_tuple(config) is None
    checkpoint = empty_checkpoint()
    saved = saver.put(config, checkpoint, {"step": 0}, {})
    found = saver.get_tuple(config)
    assert found is not None and found.checkpoint["id"] == checkpoint["id"]
    assert saved["configurable"]["checkpoint_id"] == checkpoint["id"]
