"""What each framework adapter adds per model call, over the same framework run without
wakeline, on the same local fake OpenAI server.

Each case builds one framework agent whose run makes exactly one model request (no tools)
through the framework's own OpenAI model and the official SDK, over HTTP to
:class:`~wakeline.testing.fake_llm.FakeLLMServer`.  "plain" runs it ``calls`` times in a loop
with no wakeline at all; "wakeline" runs it ``calls`` times inside one wakeline run of an
in-process embedded worker (sync=normal), every request a journaled model call.  After a
warm-up of each, the two are interleaved for ``rounds`` rounds and summarised by medians.  The
floor of the overhead is 0; the native figure to compare with is ``steps`` (a journaled step
over the zero-latency mock, no HTTP).
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.harness import running_worker, scratch_dir
from benchmarks.registry import Profile, Row, register
from wakeline import App, Context
from wakeline.testing.fake_llm import FakeLLMServer

NAME = "adapter_overhead"
Ask = Callable[[str], Awaitable[Any]]
"""One framework run: a prompt in, the output out (one model request)."""


@dataclass(frozen=True, slots=True)
class Case:
    framework: str
    package: str  # importable only when the extra is installed
    build: Callable[[str], tuple[Ask, Callable[[Context], Any]]]
    """From the server's base URL: the plain run, and the scope that makes it durable."""


def _pydantic_ai(base_url: str) -> tuple[Ask, Callable[[Context], Any]]:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    from wakeline.adapters.pydantic_ai import WakelineDurability, durable

    provider = OpenAIProvider(base_url=base_url, api_key="bench")
    agent = Agent(
        OpenAIChatModel("gpt-4o-mini", provider=provider),
        name="bench",
        capabilities=[WakelineDurability()],
    )

    async def ask(prompt: str) -> Any:
        return (await agent.run(prompt)).output

    return ask, durable


def _langchain(base_url: str) -> tuple[Ask, Callable[[Context], Any]]:
    from langchain.agents import create_agent
    from langchain_openai import ChatOpenAI

    from wakeline.adapters.langchain import WakelineMiddleware, durable

    model = ChatOpenAI(model="gpt-4o-mini", base_url=base_url, api_key="bench", max_retries=0)
    agent = create_agent(model, [], system_prompt="Answer.", middleware=[WakelineMiddleware()])

    async def ask(prompt: str) -> Any:
        return await agent.ainvoke({"messages": [{"role": "user", "content": prompt}]})

    return ask, durable


def _openai_agents(base_url: str) -> tuple[Ask, Callable[[Context], Any]]:
    from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
    from openai import AsyncOpenAI

    from wakeline.adapters.openai_agents import durable

    set_tracing_disabled(True)  # no trace export (it would want a key), as in the tests
    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    model = OpenAIChatCompletionsModel("gpt-4o-mini", openai_client=client)
    agent = Agent(name="bench", instructions="Answer.", model=model)

    async def ask(prompt: str) -> Any:
        return (await Runner.run(agent, prompt)).final_output

    return ask, durable


CASES = (
    Case("pydantic-ai", "pydantic_ai", _pydantic_ai),
    Case("langchain", "langchain", _langchain),
    Case("openai-agents", "agents", _openai_agents),
)


def _app(ask: Ask, scope: Callable[[Context], Any]) -> App:
    app = App(name="bench")

    @app.agent
    async def many(ctx: Context, calls: int) -> int:
        with scope(ctx):
            for i in range(calls):
                await ask(f"question {i}")
        return calls

    return app


async def _plain(ask: Ask, calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        await ask(f"question {i}")
    return (time.perf_counter() - start) / calls * 1e6


async def _durable(h: Any, calls: int) -> float:
    start = time.perf_counter()
    handle = await h.client.start_run("many", calls)
    await h.client.result(handle.run_id, from_offset=handle.from_offset)
    return (time.perf_counter() - start) / calls * 1e6


async def _measure(case: Case, calls: int, rounds: int) -> list[Row]:
    plain: list[float] = []
    durable: list[float] = []
    with FakeLLMServer() as server, scratch_dir() as data:
        ask, scope = case.build(server.openai_base_url)
        async with running_worker(_app(ask, scope), data) as h:
            await _plain(ask, 5)  # warm-ups: connections, imports, caches
            await _durable(h, 5)
            for _ in range(rounds):
                plain.append(await _plain(ask, calls))
                durable.append(await _durable(h, calls))
    p, d = statistics.median(plain), statistics.median(durable)
    note = f"{rounds} rounds x {calls} calls, medians"
    name = case.framework
    return [
        Row(NAME, f"{name}: plain framework run", p, "us/call", note),
        Row(NAME, f"{name}: on wakeline", d, "us/call"),
        Row(NAME, f"{name}: wakeline's overhead", d - p, "us/call", "floor: 0"),
    ]


@register(NAME)
async def adapter_overhead(profile: Profile) -> list[Row]:
    """Every adapter whose framework is installed (``pip install 'wakeline[dev]'`` has all)."""
    calls = profile.step_calls // 2
    rounds = max(3, profile.telemetry_rounds)
    rows: list[Row] = []
    for case in CASES:
        if importlib.util.find_spec(case.package) is None:
            rows.append(Row(NAME, f"{case.framework}: not installed", 0, "", case.package))
            continue
        rows += await _measure(case, calls, rounds)
    return rows
