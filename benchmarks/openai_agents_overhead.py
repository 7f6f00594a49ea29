"""The OpenAI Agents SDK adapter's per-call overhead, on one local fake Chat Completions server.

    python -m benchmarks.openai_agents_overhead [--calls 200] [--nodelay]

The same SDK agent (``OpenAIChatCompletionsModel``, no tools: one model call per
``Runner.run``) makes ``calls`` sequential calls:

* ``sdk``: plain ``Runner.run``, no wakeline;
* ``adapter, in memory``: inside one wakeline run, ``with durable(ctx)``, on the in-memory core
  (``CoreDriver``: journaling and replay logic, no log);
* ``adapter, embedded log``: the same wakeline agent run by a real worker on the embedded log;
* ``native ctx.llm, embedded log``: a wakeline agent calling ``ctx.llm`` through
  ``OpenAICompatProvider`` (no SDK), for comparison.

Prints microseconds per call (wall time / calls, after a warm-up).  Figures are not asserted
anywhere.  The fake server writes a response's headers and body separately, so on loopback
each call waits for the client's delayed ACK (about 40 ms on Linux) and that floor hides the
overhead; ``--nodelay`` sets ``TCP_NODELAY`` on the server's sockets in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import socketserver
import time
from typing import Any

from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI

from benchmarks.harness import running_worker, scratch_dir
from wakeline import App, Context, jsonutil
from wakeline.actors.effects import run_effect
from wakeline.adapters.openai_agents import durable
from wakeline.providers.openai_compat import OpenAICompatProvider
from wakeline.schemas.events import RunStarted
from wakeline.testing import CoreDriver
from wakeline.testing.fake_llm import FakeLLMServer


def sdk_agent(base_url: str) -> Agent[Any]:
    client = AsyncOpenAI(base_url=base_url, api_key="test-key", max_retries=0)
    model = OpenAIChatCompletionsModel("gpt-4o-mini", openai_client=client)
    return Agent(name="bench", instructions="Answer.", model=model)


def make_app(base_url: str) -> App:
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    app.provider("openai", OpenAICompatProvider(base_url=base_url, api_key="test-key"))
    agent = sdk_agent(base_url)

    @app.agent
    async def adapter(ctx: Context, calls: int) -> int:
        with durable(ctx):
            for i in range(calls):
                await Runner.run(agent, f"question {i}")
        return calls

    @app.agent
    async def native(ctx: Context, calls: int) -> int:
        for i in range(calls):
            await ctx.llm(
                [
                    {"role": "system", "content": "Answer."},
                    {"role": "user", "content": f"question {i}"},
                ]
            )
        return calls

    return app


async def plain_sdk(base_url: str, calls: int) -> float:
    agent = sdk_agent(base_url)
    await Runner.run(agent, "warm up")
    start = time.perf_counter()
    for i in range(calls):
        await Runner.run(agent, f"question {i}")
    return time.perf_counter() - start


async def in_memory(base_url: str, calls: int, run_id: str) -> float:
    app = make_app(base_url)
    start = time.perf_counter()
    core = CoreDriver(run_id, app)
    pending = list(core.start(RunStarted("adapter", jsonutil.dumps(calls))).effects)
    while pending:
        result = await run_effect(app, pending.pop(0), now_ms=lambda: 0)
        pending += core.deliver(result).effects
    assert core.terminal is not None
    return time.perf_counter() - start


async def on_log(base_url: str, calls: int, agent: str) -> float:
    with scratch_dir() as data:
        async with running_worker(make_app(base_url), data) as h:
            warm = await h.client.start_run(agent, 1)
            await h.client.result(warm.run_id, from_offset=warm.from_offset)
            start = time.perf_counter()
            handle = await h.client.start_run(agent, calls)
            await h.client.result(handle.run_id, from_offset=handle.from_offset)
            return time.perf_counter() - start


async def main(calls: int) -> None:
    set_tracing_disabled(True)
    with FakeLLMServer() as server:
        url = server.openai_base_url
        await in_memory(url, 2, "warm")
        rows = [
            ("sdk (no wakeline)", await plain_sdk(url, calls)),
            ("adapter, in memory", await in_memory(url, calls, "bench")),
            ("adapter, embedded log", await on_log(url, calls, "adapter")),
            ("native ctx.llm, embedded log", await on_log(url, calls, "native")),
        ]
        sent = server.received
    for name, seconds in rows:
        print(f"{name:30} {seconds / calls * 1e6:9.0f} us/call")
    print(f"({calls} calls each; the fake server answered {sent} requests)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--nodelay", action="store_true")
    options = parser.parse_args()
    socketserver.StreamRequestHandler.disable_nagle_algorithm = options.nodelay
    asyncio.run(main(options.calls))
