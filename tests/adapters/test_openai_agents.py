"""An OpenAI Agents SDK agent run unchanged on wakeline: the SDK's own ``Runner`` loop and its
``OpenAIChatCompletionsModel`` (the official OpenAI client over HTTP) against the local fake
server.

Every model request is a journaled, priced wakeline model call (the handoff target's too);
every function tool call a journaled tool call; a fresh core that has only the journal (a
crash) sends no journaled request again; the journal replays byte for byte with no provider;
the OpenAI client's HTTP errors are wakeline's retriable or terminal provider errors."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from agents import (
    Agent,
    ModelResponse,
    ModelSettings,
    ModelTracing,
    OpenAIChatCompletionsModel,
    OpenAIProvider,
    RunConfig,
    Runner,
    SQLiteSession,
    function_tool,
    handoff,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

from wakeline import App, Context, jsonutil
from wakeline.actors.effects import run_effect
from wakeline.adapters.openai_agents import durable, register
from wakeline.adapters.openai_agents.model import FrameworkModel
from wakeline.core.model import (
    ModelRequest,
    ProviderError,
    RetriableProviderError,
    TerminalProviderError,
)
from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    ModelCallCompleted,
    ModelCallFailed,
    ModelCallRequested,
    RunCompleted,
    RunFailed,
    RunStarted,
    StepRequested,
    ToolCallCompleted,
    ToolCallRequested,
)
from wakeline.testing import CoreDriver
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.fake_llm_wire import fake_reply

CHARGES: list[int] = []
DELTAS: list[str] = []
UNREACHABLE = "http://127.0.0.1:9/unreachable"

set_tracing_disabled(True)  # no trace export (it would want an OpenAI key)


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def collected() -> Iterator[None]:
    """The runs' dropped activations are collected at known points, not at random: closed
    by the collector outside their context, the SDK's context managers cannot reset their
    variables, and Python 3.11 turns such an error reported during ``ast.parse`` (pytest's
    reports parse source) into a SystemError."""
    yield
    gc.collect()


def model(base_url: str, name: str = "gpt-4o-mini") -> OpenAIChatCompletionsModel:
    client = AsyncOpenAI(base_url=base_url, api_key="test-key", max_retries=0)
    return OpenAIChatCompletionsModel(name, openai_client=client)


def billing_agent(base_url: str, settings: ModelSettings | None = None) -> Agent[Any]:
    @function_tool
    def charge(n: int) -> str:
        """Charge the card."""
        CHARGES.append(n)
        return f"charged {n}"

    return Agent(
        name="billing",
        instructions="You bill.",
        model=model(base_url),
        tools=[charge],
        model_settings=settings or ModelSettings(),
    )


def two_charges(request: httpx2.Request) -> httpx2.Response:
    """A Chat Completions endpoint that asks for two ``charge`` calls at once, then answers."""
    last = json.loads(request.content)["messages"][-1]
    message: dict[str, Any] = {"role": "assistant", "content": "both charged"}
    if last["role"] != "tool":
        calls = [{"id": f"call_{n}", "type": "function", "function": {}} for n in (1, 2)]
        for n, call in enumerate(calls, 1):
            call["function"] = {"name": "charge", "arguments": json.dumps({"n": n})}
        message = {"role": "assistant", "content": None, "tool_calls": calls}
    usage = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    body = {"id": "chatcmpl-2", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini"}
    return httpx2.Response(200, json={**body, "choices": [choice], "usage": usage})


def parallel_agent() -> Agent[Any]:
    transport = httpx2.MockTransport(two_charges)
    client = AsyncOpenAI(api_key="test-key", http_client=httpx2.AsyncClient(transport=transport))
    agent = billing_agent("http://unused")
    agent.model = OpenAIChatCompletionsModel("gpt-4o-mini", openai_client=client)
    return agent


RESPONSES_SENT: list[dict[str, Any]] = []


def responses_endpoint(request: httpx2.Request) -> httpx2.Response:
    """The Responses API, scripted (the fake server speaks Chat Completions only): a call of
    ``charge``, then an answer with its output."""
    body = json.loads(request.content)
    RESPONSES_SENT.append(body)
    last = body["input"][-1]
    if last.get("type") == "function_call_output":
        text = {"type": "output_text", "text": f"done: {last['output']}", "annotations": []}
        output = [{"type": "message", "id": "msg_2", "role": "assistant", "content": [text]}]
    else:
        call = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "charge"}
        output = [{**call, "arguments": json.dumps({"n": 1})}]
    usage = {"input_tokens": 20, "output_tokens": 5, "total_tokens": 25}
    usage |= {"input_tokens_details": {"cached_tokens": 4}}
    usage |= {"output_tokens_details": {"reasoning_tokens": 2}}
    head = {"id": f"resp_{len(RESPONSES_SENT)}", "object": "response", "created_at": 0}
    head |= {"model": body["model"], "status": "completed", "tool_choice": "auto", "tools": []}
    reply = {**head, "output": output, "usage": usage, "parallel_tool_calls": True}
    return httpx2.Response(200, json=reply)


def responses_provider() -> OpenAIProvider:
    transport = httpx2.MockTransport(responses_endpoint)
    client = AsyncOpenAI(api_key="test-key", http_client=httpx2.AsyncClient(transport=transport))
    return OpenAIProvider(openai_client=client, use_responses=True)


def delegating(request: httpx2.Request) -> httpx2.Response:
    """Chat Completions, scripted: the boss (gpt-4o-mini) asks its ``research`` tool, an agent
    (gpt-4o), then answers with what it said."""
    body = json.loads(request.content)
    DELEGATED.append(body["model"])
    last = body["messages"][-1]
    message: dict[str, Any] = {"role": "assistant", "content": "otters hold hands"}
    if body["model"] == "gpt-4o-mini" and last["role"] == "tool":
        message = {"role": "assistant", "content": f"boss: {last['content']}"}
    elif body["model"] == "gpt-4o-mini":
        arguments = json.dumps({"input": "otters"})
        call = {"id": "call_r", "type": "function", "function": {"name": "research"}}
        call["function"]["arguments"] = arguments
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    usage = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    reply = {"id": "chatcmpl-3", "object": "chat.completion", "created": 0}
    reply |= {"model": body["model"], "choices": [choice], "usage": usage}
    return httpx2.Response(200, json=reply)


DELEGATED: list[str] = []


def boss_agent() -> Agent[Any]:
    transport = httpx2.MockTransport(delegating)
    client = AsyncOpenAI(api_key="test-key", http_client=httpx2.AsyncClient(transport=transport))
    researcher = Agent(name="researcher", model=OpenAIChatCompletionsModel("gpt-4o", client))
    tool = researcher.as_tool("research", "Research a topic.")
    return Agent(name="boss", model=OpenAIChatCompletionsModel("gpt-4o-mini", client), tools=[tool])


def stuck_agent(base_url: str) -> Agent[Any]:
    @function_tool(timeout=0.01)
    async def stuck(n: int) -> str:
        """Never answers."""
        await asyncio.Event().wait()
        return "never"

    return Agent(name="stuck", model=model(base_url), tools=[stuck])


def make_app(base_url: str, tools: dict[str, Any] | None = None) -> App:
    app = App(default_provider="mock", default_model="mock-1")
    register(app, billing_agent(base_url), tools=tools)
    register(app, parallel_agent(), name="parallel")
    register(app, stuck_agent(base_url))
    register(app, boss_agent())
    helper = Agent(name="helper", instructions="You help.", model=model(base_url, "gpt-4o"))
    triage = Agent(name="triage", model=model(base_url), handoffs=[helper])
    by_object = Agent(name="triage", model=model(base_url), handoffs=[handoff(helper)])

    @app.agent
    async def handing_off(ctx: Context, prompt: str) -> list[Any]:
        with durable(ctx):
            result = await Runner.run(by_object if prompt == "object" else triage, prompt)
        return [result.last_agent.name, result.last_agent is helper, str(result.final_output)]

    by_name = billing_agent(base_url)
    by_name.model = "gpt-4o-mini"  # resolved by the run's model provider: the Responses API

    @app.agent
    async def responses(ctx: Context, prompt: str) -> str:
        config = RunConfig(model_provider=responses_provider())
        with durable(ctx):
            return str((await Runner.run(by_name, prompt, run_config=config)).final_output)

    chat = Agent(name="chat", model=model(base_url))

    @app.agent
    async def remembering(ctx: Context, prompt: str) -> list[str]:
        session = SQLiteSession("chat")  # in memory: what a replay reads is in the journal
        with durable(ctx):
            first = await Runner.run(chat, "my name is Ada", session=session)
            second = await Runner.run(chat, prompt, session=session)
        return [str(first.final_output), str(second.final_output)]

    @app.agent
    async def streaming(ctx: Context, prompt: str) -> list[str]:
        texts = []
        with durable(ctx):
            agent = billing_agent(base_url, ModelSettings(include_usage=True))
            result = Runner.run_streamed(agent, prompt)
            async for event in result.stream_events():
                if event.type == "raw_response_event" and event.data.type.endswith("text.delta"):
                    texts.append(event.data.delta)
        return [str(result.final_output), "".join(texts)]

    return app


async def drive(core: CoreDriver, completion: Any) -> None:
    pending = list(completion.effects)
    while pending:
        effect = pending.pop(0)
        result = await run_effect(core.app, effect, now_ms=lambda: 0, on_delta=DELTAS.append)
        pending += core.deliver(result).effects
        gc.collect(1)  # the activation the delivery replaced, collected now (see collected)


async def run(app: App, run_id: str, agent: str, prompt: str) -> CoreDriver:
    core = CoreDriver(run_id, app, always_replay=True)
    await drive(core, core.start(RunStarted(agent, jsonutil.dumps(prompt))))
    return core


def replays_identically(core: CoreDriver, app: App, run_id: str) -> bool:
    raw = [event_codec().encode(e) for e in core.journal]
    report = replay_journal(app, run_id, raw)
    return report.identical and report.ended


async def test_an_sdk_agent_is_journaled_priced_and_replayed(server: FakeLLMServer) -> None:
    CHARGES.clear()
    core = await run(make_app(server.openai_base_url), "oai-1", "billing", "charge the card")
    terminal = core.terminal.payload if core.terminal else None
    assert isinstance(terminal, RunCompleted), core.status
    assert jsonutil.loads(terminal.output).startswith("fake reply #2")
    assert CHARGES == [1] and server.received == 2  # a tool call, then the answer

    payloads = [e.payload for e in core.journal]
    calls = [p for p in payloads if isinstance(p, ModelCallRequested)]
    assert [(c.provider, c.model, c.stream) for c in calls] == [
        ("openai", "gpt-4o-mini", False)
    ] * 2
    first = jsonutil.loads(calls[0].request)
    assert first["messages"] == [
        {"role": "system", "content": "You bill."},
        {"role": "user", "content": "charge the card"},
    ]
    assert [t["name"] for t in first["tools"]] == ["charge"]
    done = [p for p in payloads if isinstance(p, ModelCallCompleted)]
    assert all(c.cost_usd is not None and c.cost_usd > Decimal(0) for c in done)
    given = [fake_reply(r.body) for r in server.requests()]  # the usage the server reported
    assert [
        (c.usage.input_tokens, c.usage.output_tokens, c.usage.cached_input_tokens) for c in done
    ] == [(g.input_tokens, g.output_tokens, g.cached_tokens) for g in given]
    tools = [p for p in payloads if isinstance(p, ToolCallRequested)]
    assert [(t.tool, jsonutil.loads(t.args), t.idempotent) for t in tools] == [
        ("charge", {"n": 1}, True)
    ]
    [tool_done] = [p for p in payloads if isinstance(p, ToolCallCompleted)]
    assert jsonutil.loads(tool_done.result) == "charged 1"

    assert replays_identically(core, make_app(UNREACHABLE), "oai-1")
    assert server.received == 2 and CHARGES == [1]


async def test_tool_calls_of_one_response_are_journaled_in_a_stable_order() -> None:
    CHARGES.clear()
    core = await run(make_app(UNREACHABLE), "oai-7", "parallel", "charge twice")
    terminal = core.terminal.payload if core.terminal else None
    assert isinstance(terminal, RunCompleted) and jsonutil.loads(terminal.output) == "both charged"
    tools = [e.payload for e in core.journal if isinstance(e.payload, ToolCallRequested)]
    assert [jsonutil.loads(t.args) for t in tools] == [{"n": 1}, {"n": 2}]
    assert CHARGES == [1, 2]
    # the SDK starts both calls concurrently; a replay re-runs that and asks the same
    assert replays_identically(core, make_app(UNREACHABLE), "oai-7") and CHARGES == [1, 2]


async def test_a_tool_timeout_is_enforced_where_the_tool_runs(server: FakeLLMServer) -> None:
    core = await run(make_app(server.openai_base_url), "oai-8", "stuck", "wait")
    assert isinstance(core.terminal.payload if core.terminal else None, RunCompleted)
    [done] = [e.payload for e in core.journal if isinstance(e.payload, ToolCallCompleted)]
    assert jsonutil.loads(done.result) == "Tool 'stuck' timed out after 0.01 seconds."


async def test_a_model_named_by_the_agent_is_resolved_and_journaled_responses_api() -> None:
    CHARGES.clear()
    RESPONSES_SENT.clear()
    core = await run(make_app(UNREACHABLE), "oai-9", "responses", "charge the card")
    terminal = core.terminal.payload if core.terminal else None
    assert isinstance(terminal, RunCompleted) and jsonutil.loads(terminal.output) == (
        "done: charged 1"
    )
    calls = [e.payload for e in core.journal if isinstance(e.payload, ModelCallRequested)]
    assert [(c.provider, c.model) for c in calls] == [("openai", "gpt-4o-mini")] * 2
    done = [e.payload for e in core.journal if isinstance(e.payload, ModelCallCompleted)]
    assert [
        (c.response_id, c.usage.cached_input_tokens, c.usage.reasoning_tokens) for c in done
    ] == [
        ("resp_1", 4, 2),
        ("resp_2", 4, 2),
    ]
    assert len(RESPONSES_SENT) == 2 and CHARGES == [1]
    assert RESPONSES_SENT[1]["input"][-1] == {
        "call_id": "call_1",
        "output": "charged 1",
        "type": "function_call_output",
    }
    assert replays_identically(core, make_app(UNREACHABLE), "oai-9")
    assert len(RESPONSES_SENT) == 2 and CHARGES == [1]  # the replay sent nothing


async def test_a_session_is_read_and_written_in_steps(server: FakeLLMServer) -> None:
    core = await run(make_app(server.openai_base_url), "oai-10", "remembering", "who am I?")
    assert isinstance(core.terminal.payload if core.terminal else None, RunCompleted)
    steps = [e.payload.name for e in core.journal if isinstance(e.payload, StepRequested)]
    # per SDK run: the history read, the new input written, then the run's items written
    assert steps == ["session.get_items", "session.add_items", "session.add_items"] * 2
    second = server.requests()[1].body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]  # the history, read
    assert second[0]["content"] == "my name is Ada" and second[2]["content"] == "who am I?"
    assert replays_identically(core, make_app(UNREACHABLE), "oai-10")
    assert server.received == 2


async def test_an_agent_used_as_a_tool_is_one_journaled_tool_call() -> None:
    DELEGATED.clear()
    core = await run(make_app(UNREACHABLE), "oai-11", "boss", "tell me about otters")
    terminal = core.terminal.payload if core.terminal else None
    assert isinstance(terminal, RunCompleted)
    assert jsonutil.loads(terminal.output) == "boss: otters hold hands"
    calls = [e.payload for e in core.journal if isinstance(e.payload, ModelCallRequested)]
    assert [c.model for c in calls] == ["gpt-4o-mini", "gpt-4o-mini"]  # the boss's own calls
    [tool] = [e.payload for e in core.journal if isinstance(e.payload, ToolCallRequested)]
    [done] = [e.payload for e in core.journal if isinstance(e.payload, ToolCallCompleted)]
    assert (tool.tool, jsonutil.loads(tool.args)) == ("research", {"input": "otters"})
    assert jsonutil.loads(done.result) == "otters hold hands"  # the nested run, in the tool
    assert DELEGATED == ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]
    assert replays_identically(core, make_app(UNREACHABLE), "oai-11")
    assert len(DELEGATED) == 3  # the replay sent nothing, the nested run included


async def test_a_tool_can_be_journaled_as_not_idempotent(server: FakeLLMServer) -> None:
    app = make_app(server.openai_base_url, tools={"charge": {"idempotent": False}})
    core = await run(app, "oai-3", "billing", "charge once")
    tools = [e.payload for e in core.journal if isinstance(e.payload, ToolCallRequested)]
    assert [(t.tool, t.idempotent) for t in tools] == [("charge", False)]


async def test_tool_options_apply_to_their_own_run_only(server: FakeLLMServer) -> None:
    """Options given to one run's ``durable`` scope never leak into a later run of the
    process: before, they were merged into the SDK's process-wide default runner."""
    await run(
        make_app(server.openai_base_url, tools={"charge": {"idempotent": False}}),
        "oai-3a",
        "billing",
        "x",
    )
    core = await run(make_app(server.openai_base_url), "oai-3b", "billing", "charge once")
    tools = [e.payload for e in core.journal if isinstance(e.payload, ToolCallRequested)]
    assert [(t.tool, t.idempotent) for t in tools] == [("charge", True)]


@pytest.mark.parametrize("form", ["agent", "object"])  # handoffs=[helper] / [handoff(helper)]
async def test_the_agent_a_handoff_leads_to_runs_on_the_wakeline_model(
    server: FakeLLMServer, form: str
) -> None:
    core = await run(make_app(server.openai_base_url), "oai-4", "handing_off", form)
    terminal = core.terminal.payload if core.terminal else None
    assert isinstance(terminal, RunCompleted), core.status
    name, is_users_agent, output = jsonutil.loads(terminal.output)
    assert name == "helper" and is_users_agent and output.startswith("fake reply #2")
    calls = [e.payload for e in core.journal if isinstance(e.payload, ModelCallRequested)]
    assert [c.model for c in calls] == ["gpt-4o-mini", "gpt-4o"]  # triage, then the helper
    assert server.received == 2
    assert replays_identically(core, make_app(UNREACHABLE), "oai-4")


async def test_a_streamed_run_journals_its_final_response_and_forwards_deltas(
    server: FakeLLMServer,
) -> None:
    CHARGES.clear()
    DELTAS.clear()
    core = await run(make_app(server.openai_base_url), "oai-5", "streaming", "charge the card")
    terminal = core.terminal.payload if core.terminal else None
    assert isinstance(terminal, RunCompleted), core.status
    output, streamed = jsonutil.loads(terminal.output)
    assert output.startswith("fake reply #2") and CHARGES == [1]
    assert "".join(DELTAS) == output  # the answer's text deltas, live, to wakeline's stream
    assert streamed == output  # and the SDK's stream events carry the text
    calls = [e.payload for e in core.journal if isinstance(e.payload, ModelCallRequested)]
    assert [c.stream for c in calls] == [True, True]
    done = [e.payload for e in core.journal if isinstance(e.payload, ModelCallCompleted)]
    given = [fake_reply(r.body) for r in server.requests()]
    assert [(c.usage.input_tokens, c.usage.output_tokens) for c in done] == [
        (g.input_tokens, g.output_tokens) for g in given
    ]
    assert replays_identically(core, make_app(UNREACHABLE), "oai-5")
    assert server.received == 2 and CHARGES == [1]


async def test_outside_a_wakeline_run_the_sdk_runs_as_without_wakeline(
    server: FakeLLMServer,
) -> None:
    CHARGES.clear()
    make_app(server.openai_base_url)  # nothing installed changes a plain run
    result = await Runner.run(billing_agent(server.openai_base_url), "charge the card")
    assert str(result.final_output).startswith("fake reply #2") and CHARGES == [1]
    assert server.received == 2


async def sdk_call(base_url: str) -> ModelResponse:
    return await model(base_url).get_response(
        None,
        "hello",
        ModelSettings(),
        [],
        None,
        [],
        ModelTracing.DISABLED,
        previous_response_id=None,
        conversation_id=None,
        prompt=None,
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, RetriableProviderError), (503, RetriableProviderError), (400, TerminalProviderError)],
)
async def test_http_errors_are_retriable_or_terminal(
    server: FakeLLMServer, status: int, kind: type[ProviderError]
) -> None:
    provider = FrameworkModel("openai", lambda _: sdk_call(server.openai_base_url))
    request = ModelRequest(model="gpt-4o-mini", messages=({"role": "user", "content": "hi"},))
    server.fail_next(1, status)
    with pytest.raises(ProviderError) as raised:
        await provider.complete(request)
    assert type(raised.value) is kind and raised.value.status_code == status
    assert (await provider.complete(request)).text.startswith("fake reply #1")


async def test_an_unreachable_provider_is_retriable() -> None:
    provider = FrameworkModel("openai", lambda _: sdk_call(UNREACHABLE))
    request = ModelRequest(model="gpt-4o-mini", messages=({"role": "user", "content": "hi"},))
    with pytest.raises(RetriableProviderError):
        await provider.complete(request)


async def test_a_terminal_error_fails_the_run(server: FakeLLMServer) -> None:
    server.fail_next(1, 400)
    core = await run(make_app(server.openai_base_url), "oai-6", "billing", "charge the card")
    [failed] = [e.payload for e in core.journal if isinstance(e.payload, ModelCallFailed)]
    assert failed.error_type == "TerminalProviderError" and not failed.retriable
    assert failed.status_code == 400
    assert isinstance(core.terminal.payload if core.terminal else None, RunFailed)
    assert server.received == 1
