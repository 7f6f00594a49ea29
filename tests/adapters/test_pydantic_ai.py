"""A pydantic-ai agent run unchanged on wakeline: the real ``Agent`` loop and the real OpenAI
model of pydantic-ai (the official SDK over HTTP) against the local fake server.

Every model request is a journaled, priced wakeline model call; every tool call a journaled
tool call; a fresh core that has only the journal (a crash) sends no journaled request again;
the journal replays byte for byte with no provider at all."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from crash_runs import stream_followed
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from wakeline import App, Context, jsonutil
from wakeline.actors.effects import run_effect
from wakeline.adapters.pydantic_ai import WakelineDurability, durable, register
from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    ModelCallCompleted,
    ModelCallRequested,
    RunCompleted,
    RunStarted,
    ToolCallCompleted,
    ToolCallRequested,
)
from wakeline.testing import CoreDriver
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.fake_llm_wire import fake_reply
from wakeline.testing.harness import local_runtime

CHARGES: list[int] = []


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


def make_app(base_url: str) -> App:
    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=base_url, api_key="k"))
    agent = Agent(model, name="billing", capabilities=[WakelineDurability()])

    @agent.tool_plain
    def charge(n: int) -> str:
        CHARGES.append(n)
        return f"charged {n}"

    app = App(default_provider="mock", default_model="mock-1")
    register(app, agent)
    return app


async def test_a_pydantic_ai_agent_is_journaled_priced_and_replayed(
    server: FakeLLMServer,
) -> None:
    CHARGES.clear()
    core = CoreDriver("pai-1", make_app(server.openai_base_url), always_replay=True)
    await core.drive(core.start(RunStarted("billing", jsonutil.dumps("charge the card"))))
    terminal = core.terminal.payload if core.terminal else None
    assert isinstance(terminal, RunCompleted), core.status
    assert jsonutil.loads(terminal.output).startswith("fake reply #2")
    assert CHARGES == [1] and server.received == 2  # a tool call, then the answer

    payloads = [e.payload for e in core.journal]
    calls = [p for p in payloads if isinstance(p, ModelCallRequested)]
    assert [(c.provider, c.model) for c in calls] == [("openai", "gpt-4o-mini")] * 2
    done = [p for p in payloads if isinstance(p, ModelCallCompleted)]
    assert all(c.cost_usd is not None and c.cost_usd > Decimal(0) for c in done)
    # the usage pydantic-ai read from the provider's answers, as the fake server gave them
    given = [fake_reply(r.body) for r in server.requests()]
    assert [(c.usage.input_tokens, c.usage.output_tokens) for c in done] == [
        (g.input_tokens, g.output_tokens) for g in given
    ]
    tools = [p for p in payloads if isinstance(p, ToolCallRequested)]
    assert [(t.tool, jsonutil.loads(t.args)) for t in tools] == [("charge", {"n": 1})]
    [tool_done] = [p for p in payloads if isinstance(p, ToolCallCompleted)]
    assert "charged 1" in tool_done.result

    raw = [event_codec().encode(e) for e in core.journal]
    report = replay_journal(make_app("http://127.0.0.1:9/unreachable"), "pai-1", raw)
    assert report.identical and report.ended
    assert server.received == 2 and CHARGES == [1]


async def test_a_crash_after_the_first_call_resends_nothing_journaled(
    server: FakeLLMServer,
) -> None:
    CHARGES.clear()
    app = make_app(server.openai_base_url)
    core = CoreDriver("pai-2", app, always_replay=True)
    first = core.start(RunStarted("billing", jsonutil.dumps("charge the card")))
    [effect] = first.effects
    core.deliver(await run_effect(app, effect, now_ms=lambda: 0))  # the first call, journaled
    assert server.received == 1

    fresh = core.crash(app=make_app(server.openai_base_url))  # a new process, the journal only
    await fresh.drive(fresh.recover())
    terminal = fresh.terminal.payload if fresh.terminal else None
    assert isinstance(terminal, RunCompleted), fresh.status
    digests = [r.digest for r in server.requests()]
    assert len(digests) == len(set(digests)) == 2  # the journaled request was not sent again
    assert CHARGES == [1]


async def test_a_streamed_request_sends_live_deltas_and_journals_the_final_text(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    seen: list[str] = []

    async def handler(run_context: Any, events: AsyncIterable[Any]) -> None:
        async for event in events:  # the user's own handler still sees the stream live
            seen.append(type(event).__name__)

    model = OpenAIChatModel(
        "gpt-4o-mini", provider=OpenAIProvider(base_url=server.openai_base_url, api_key="k")
    )
    durability = WakelineDurability(event_stream_handler=handler)
    agent = Agent(model, name="streamer", capabilities=[durability])
    app = App()
    register(app, agent)
    async with local_runtime(app, tmp_path / "data") as rt:
        joined, journaled = await stream_followed(rt.client, server, "streamer")
    assert joined == journaled
    assert "PartStartEvent" in seen and [r.stream for r in server.requests()] == [True]


async def test_run_stream_journals_a_streamed_call_and_sends_live_deltas(
    server: FakeLLMServer,
) -> None:
    model = OpenAIChatModel(
        "gpt-4o-mini", provider=OpenAIProvider(base_url=server.openai_base_url, api_key="k")
    )
    agent = Agent(model, name="streamer", capabilities=[WakelineDurability()])
    app = App()

    @app.agent
    async def streamer(ctx: Context, prompt: str) -> list[str]:
        with durable(ctx):
            async with agent.run_stream(prompt) as result:  # no debouncing: it needs timers
                return [t async for t in result.stream_text(delta=True, debounce_by=None)]

    core = CoreDriver("pai-stream", app, always_replay=True)
    deltas: list[str] = []
    started = core.start(RunStarted("streamer", jsonutil.dumps("tell me a story")))
    await core.drive(started, on_delta=deltas.append)
    terminal = core.terminal.payload if core.terminal else None
    assert isinstance(terminal, RunCompleted), core.status
    [requested] = [e.payload for e in core.journal if isinstance(e.payload, ModelCallRequested)]
    [done] = [e.payload for e in core.journal if isinstance(e.payload, ModelCallCompleted)]
    text = jsonutil.loads(done.message)["content"]
    assert requested.stream and [r.stream for r in server.requests()] == [True]
    assert len(deltas) > 1 and "".join(deltas) == text  # live, while the call streamed
    assert "".join(jsonutil.loads(terminal.output)) == text  # the agent's stream: the final
