"""``WakelineSession``: the OpenAI Agents SDK's ``Session`` protocol over a wakeline session.
A registered SDK agent whose runs are turns of one session keeps its conversation across the
runs (the real SDK and OpenAI client against the fake server): each turn's request carries the
earlier turns' items, folded from their journals; a replay of a turn reads them from its own
journal; the protocol's reads and writes (limit, pop, clear) behave as the SDK expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI

from wakeline import App, Context
from wakeline.adapters.openai_agents import WakelineSession, durable, register
from wakeline.client import Client
from wakeline.core.sessions import SessionError
from wakeline.replay import replay_run
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.harness import local_runtime

UNREACHABLE = "http://127.0.0.1:9/v1"
set_tracing_disabled(True)


def make_app(base_url: str) -> App:
    client = AsyncOpenAI(base_url=base_url, api_key="test-key", max_retries=0)
    model = OpenAIChatCompletionsModel("gpt-4o-mini", openai_client=client)
    app = App(default_provider="mock", default_model="mock-1")
    register(app, Agent(name="chat", instructions="You chat.", model=model))
    quiet = Agent(name="quiet", model=model)

    @app.agent
    async def memory(ctx: Context, op: str) -> list[Any]:
        session = WakelineSession(ctx, ctx.session.id)
        if op == "pop":
            popped = await session.pop_item()
            return [popped, *await session.get_items()]
        if op == "clear":
            await session.clear_session()
            return await session.get_items()
        with durable(ctx):
            await Runner.run(quiet, op, session=session)
        return await session.get_items(limit=1)

    return app


async def test_a_conversation_spans_the_turns_of_a_session(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        async with (
            local_runtime(make_app(server.openai_base_url), tmp_path / "data") as rt,
            Client(rt.log, views_dir=tmp_path / "views") as client,
        ):
            outputs = []
            for prompt in ("my name is Ada", "I like kelp", "who am I?"):
                handle = await client.start_run("chat", prompt, session="oai")
                outputs.append(await client.result(handle.run_id))
            items = await WakelineSession(client, "oai").get_items()
            last_two = await WakelineSession(client, "oai").get_items(limit=2)
            replayed = await replay_run(rt.log, make_app(UNREACHABLE), "oai:2")
            with pytest.raises(SessionError, match="changes only inside its turns"):
                await WakelineSession(client, "oai").add_items([])
    requests = server.requests()
    assert len(requests) == 3  # one model request a turn, none sent again
    third = requests[2].body["messages"]
    assert [(m["role"], m["content"]) for m in third[1:]] == [
        ("user", "my name is Ada"),
        ("assistant", outputs[0]),
        ("user", "I like kelp"),
        ("assistant", outputs[1]),
        ("user", "who am I?"),
    ]
    assert [item.get("role") for item in items] == ["user", "assistant"] * 3
    assert items[-1]["content"][0]["text"] == outputs[2] and last_two == items[-2:]
    assert replayed.identical and replayed.ended


async def test_the_session_protocol_limit_pop_and_clear(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        async with (
            local_runtime(make_app(server.openai_base_url), tmp_path / "data") as rt,
            Client(rt.log, views_dir=tmp_path / "views") as client,
        ):
            seen = []
            for op in ("hello", "pop", "again", "clear"):
                handle = await client.start_run("memory", op, session="mem")
                seen.append(await client.result(handle.run_id))
            after = await client.session_items("mem")
            outside = await client.start_run("memory", "hello")
            with pytest.raises(Exception, match="is not a turn of a session"):
                await client.result(outside.run_id)
    hello, pop, again, clear = seen
    assert hello[0]["role"] == "assistant" and len(hello) == 1  # limit=1: the latest item
    assert pop[0] == hello[0] and [i["role"] for i in pop[1:]] == ["user"]  # popped the reply
    assert again[0]["role"] == "assistant"
    assert clear == [] and after == []
    second = server.requests()[1].body["messages"]  # "again" saw "hello" without its reply
    assert [(m["role"], m["content"]) for m in second] == [("user", "hello"), ("user", "again")]
