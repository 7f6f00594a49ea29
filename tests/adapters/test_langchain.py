"""A LangChain 1.x agent run unchanged on wakeline: the real ``create_agent`` loop (LangGraph)
and LangChain's ``ChatOpenAI`` (the official OpenAI SDK over HTTP) against the local fake
server, with ``WakelineMiddleware``.

Every model call is a journaled, priced wakeline model call; every tool call a journaled tool
call with the run's idempotency key; a fresh core that has only the journal (a crash) sends no
journaled request again; the journal replays byte for byte with no provider at all; the
provider's HTTP errors are wakeline's retriable or terminal errors."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.structured_output import ToolStrategy
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from wakeline import App, Context, current_tool_call, jsonutil
from wakeline.actors.effects import run_effect
from wakeline.adapters.langchain import WakelineMiddleware, durable, register
from wakeline.core.app import RetryPolicy
from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    ModelCallCompleted,
    ModelCallFailed,
    ModelCallRequested,
    RunCompleted,
    RunFailed,
    RunStarted,
    ToolCallCompleted,
    ToolCallRequested,
)
from wakeline.testing import CoreDriver
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.fake_llm_wire import fake_reply

CHARGES: list[tuple[int, str]] = []
WAKELINE = WakelineMiddleware()


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@tool
def charge(n: int) -> str:
    """Charge the card n times."""
    CHARGES.append((n, current_tool_call().idempotency_key))
    return f"charged {n}"


def make_app(base_url: str, *, idempotent: bool = True) -> App:
    model = ChatOpenAI(model="gpt-4o-mini", base_url=base_url, api_key="test-key", max_retries=0)
    agent = create_agent(
        model,
        [charge],
        system_prompt="You bill customers.",
        middleware=[WakelineMiddleware(tools={"charge": {"idempotent": idempotent}})],
    )
    app = App(retry=RetryPolicy(max_attempts=2, initial_s=0.0))
    register(app, agent, name="billing")
    return app


def terminal_of(core: CoreDriver) -> object:
    return core.terminal.payload if core.terminal else None


async def test_a_langchain_agent_is_journaled_priced_and_replayed(server: FakeLLMServer) -> None:
    CHARGES.clear()
    core = CoreDriver(
        "lc-1", make_app(server.openai_base_url, idempotent=False), always_replay=True
    )
    await core.drive(core.start(RunStarted("billing", jsonutil.dumps("charge the card"))))
    terminal = terminal_of(core)
    assert isinstance(terminal, RunCompleted), core.status
    assert jsonutil.loads(terminal.output).startswith("fake reply #2")
    assert len(CHARGES) == 1 and server.received == 2  # a tool call, then the answer

    payloads = [e.payload for e in core.journal]
    calls = [p for p in payloads if isinstance(p, ModelCallRequested)]
    assert [(c.provider, c.model) for c in calls] == [("openai", "gpt-4o-mini")] * 2
    first = jsonutil.loads(calls[0].request)
    assert [m["type"] for m in first["messages"]] == ["system", "human"]
    assert all("id" not in m["data"] for m in first["messages"])  # LangGraph's random uuids
    assert [t["function"]["name"] for t in first["tools"]] == ["charge"]
    done = [p for p in payloads if isinstance(p, ModelCallCompleted)]
    assert all(c.cost_usd is not None and c.cost_usd > Decimal(0) for c in done)
    # the usage LangChain read from the provider's answers, as the fake server gave them
    given = [fake_reply(r.body) for r in server.requests()]
    assert [(c.usage.input_tokens, c.usage.output_tokens) for c in done] == [
        (g.input_tokens, g.output_tokens) for g in given
    ]
    assert [c.response_id for c in done] == [f"chatcmpl-{r.digest[:24]}" for r in server.requests()]
    assert jsonutil.loads(done[0].message)["tool_calls"][0]["function"]["name"] == "charge"
    tools = [p for p in payloads if isinstance(p, ToolCallRequested)]
    assert [(t.tool, jsonutil.loads(t.args), t.idempotent) for t in tools] == [
        ("charge", {"n": 1}, False)
    ]
    [(n, key)] = CHARGES
    assert (n, key) == (1, tools[0].idempotency_key)  # the run's key reached the tool
    [tool_done] = [p for p in payloads if isinstance(p, ToolCallCompleted)]
    assert jsonutil.loads(tool_done.result)["data"]["content"] == "charged 1"

    raw = [event_codec().encode(e) for e in core.journal]
    nowhere = make_app("http://127.0.0.1:9/unreachable", idempotent=False)
    report = replay_journal(nowhere, "lc-1", raw)
    assert report.identical and report.ended
    assert server.received == 2 and len(CHARGES) == 1


@pytest.mark.parametrize(
    ("status", "retriable", "sent"), [(429, True, 2), (503, True, 2), (400, False, 1)]
)
async def test_provider_http_errors_are_retriable_or_terminal(
    server: FakeLLMServer, status: int, retriable: bool, sent: int
) -> None:
    server.fail_next(2, status=status)
    core = CoreDriver("lc-3", make_app(server.openai_base_url), always_replay=True)
    await core.drive(core.start(RunStarted("billing", jsonutil.dumps("charge the card"))))
    failed = [e.payload for e in core.journal if isinstance(e.payload, ModelCallFailed)]
    assert [(f.status_code, f.retriable) for f in failed] == [(status, retriable)] * sent
    assert {f.error_type for f in failed} == {
        "RetriableProviderError" if retriable else "TerminalProviderError"
    }
    assert isinstance(terminal_of(core), RunFailed)
    assert server.received == sent  # max_retries=0: the SDK itself retried nothing


async def test_outside_a_wakeline_run_the_middleware_changes_nothing(
    server: FakeLLMServer,
) -> None:
    CHARGES.clear()
    model = ChatOpenAI(
        model="gpt-4o-mini", base_url=server.openai_base_url, api_key="k", max_retries=0
    )
    agent = create_agent(model, [charge], middleware=[WakelineMiddleware()])
    with pytest.raises(RuntimeError, match="only available inside a running tool"):
        await agent.ainvoke({"messages": [{"role": "user", "content": "charge"}]})
    assert server.received == 1


class Bill(BaseModel):
    n: int


def make_structured_app(base_url: str) -> App:
    model = ChatOpenAI(model="gpt-4o-mini", base_url=base_url, api_key="test-key", max_retries=0)
    agent = create_agent(model, [], response_format=ToolStrategy(Bill), middleware=[WAKELINE])
    app = App()

    @app.agent
    async def bill(ctx: Context, prompt: str) -> dict[str, Any]:
        with durable(ctx):
            state = await agent.ainvoke({"messages": [{"role": "user", "content": prompt}]})
        answer = state["structured_response"]
        assert isinstance(answer, Bill)  # rebuilt as the schema's type, live and replayed
        return answer.model_dump()

    return app


async def test_a_structured_response_is_journaled_and_rebuilt_on_replay(
    server: FakeLLMServer,
) -> None:
    core = CoreDriver("lc-5", make_structured_app(server.openai_base_url), always_replay=True)
    await core.drive(core.start(RunStarted("bill", jsonutil.dumps("bill it"))))
    terminal = terminal_of(core)
    assert isinstance(terminal, RunCompleted), core.status
    assert jsonutil.loads(terminal.output) == {"n": 1}  # the fake server called the Bill tool
    [done] = [e.payload for e in core.journal if isinstance(e.payload, ModelCallCompleted)]
    framework = jsonutil.loads(done.message)["framework"]["langchain"]
    assert framework["structured"] == {"n": 1}

    raw = [event_codec().encode(e) for e in core.journal]
    report = replay_journal(make_structured_app("http://127.0.0.1:9/unreachable"), "lc-5", raw)
    assert report.identical and report.ended
    assert server.received == 1


async def test_a_streaming_model_forwards_its_tokens_as_live_deltas(
    server: FakeLLMServer,
) -> None:
    model = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=server.openai_base_url,
        api_key="test-key",
        max_retries=0,
        streaming=True,
        stream_usage=True,
    )
    app = App()
    register(app, create_agent(model, [], middleware=[WAKELINE]), name="talk")
    core = CoreDriver("lc-6", app)
    [effect] = core.start(RunStarted("talk", jsonutil.dumps("tell me"))).effects
    deltas: list[str] = []
    result = await run_effect(app, effect, now_ms=lambda: 0, on_delta=deltas.append)
    assert isinstance(result, ModelCallCompleted)
    assert len(deltas) > 1 and "".join(deltas) == jsonutil.loads(result.message)["content"]
    assert result.usage.input_tokens == fake_reply(server.requests()[0].body).input_tokens
    [requested] = [e.payload for e in core.journal if isinstance(e.payload, ModelCallRequested)]
    assert requested.stream and server.requests()[0].stream


class TwoCalls(BaseChatModel):
    """Asks for two charges at once, then reports what the tools said."""

    @property
    def _llm_type(self) -> str:
        return "two-calls"

    def bind_tools(self, tools: Any, **kwargs: Any) -> TwoCalls:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        said = [str(m.content) for m in messages if isinstance(m, ToolMessage)]
        calls = [{"name": "charge", "args": {"n": n}, "id": f"call_{n}"} for n in (1, 2)]
        reply = AIMessage(content=", ".join(said)) if said else AIMessage("", tool_calls=calls)
        return ChatResult(generations=[ChatGeneration(message=reply)])


async def test_parallel_tool_calls_are_journaled_in_order_whatever_order_they_finish() -> None:
    CHARGES.clear()
    app = App()
    register(app, create_agent(TwoCalls(), [charge], middleware=[WAKELINE]), name="two")
    core = CoreDriver("lc-7", app, always_replay=True)
    pending = list(core.start(RunStarted("two", jsonutil.dumps("charge twice"))).effects)
    while pending:  # the newest effect first: the second tool call finishes first
        result = await run_effect(app, pending.pop(), now_ms=lambda: 0)
        pending += core.deliver(result).effects
    terminal = terminal_of(core)
    assert isinstance(terminal, RunCompleted), core.status
    assert jsonutil.loads(terminal.output) == "charged 1, charged 2"
    tools = [e.payload for e in core.journal if isinstance(e.payload, ToolCallRequested)]
    assert [jsonutil.loads(t.args) for t in tools] == [{"n": 1}, {"n": 2}]
    assert [n for n, _ in CHARGES] == [2, 1]  # they did finish the other way round

    raw = [event_codec().encode(e) for e in core.journal]
    report = replay_journal(app, "lc-7", raw)
    assert report.identical and report.ended
    assert len(CHARGES) == 2


async def test_an_agent_called_by_a_tool_is_part_of_that_tool_call(server: FakeLLMServer) -> None:
    model = ChatOpenAI(
        model="gpt-4o-mini", base_url=server.openai_base_url, api_key="k", max_retries=0
    )
    expert = create_agent(model, [], middleware=[WAKELINE])

    @tool
    async def ask_expert(n: int) -> str:
        """Ask the expert."""
        state = await expert.ainvoke({"messages": [{"role": "user", "content": f"q{n}"}]})
        return str(state["messages"][-1].text)

    app = App()
    register(app, create_agent(model, [ask_expert], middleware=[WAKELINE]), name="ask")
    core = CoreDriver("lc-8", app, always_replay=True)
    await core.drive(core.start(RunStarted("ask", jsonutil.dumps("ask the expert"))))
    assert isinstance(terminal_of(core), RunCompleted), core.status
    kinds = [type(e.payload).__name__ for e in core.journal]
    assert kinds.count("ModelCallRequested") == 2  # the expert's call is inside the tool call
    assert server.received == 3
    [done] = [e.payload for e in core.journal if isinstance(e.payload, ToolCallCompleted)]
    assert jsonutil.loads(done.result)["data"]["content"].startswith("fake reply #1")
