"""The LangChain adapter's per-call overhead, on one local fake Chat Completions server.

    python -m benchmarks.langchain_overhead [--calls 200] [--nodelay]

The same ``create_agent`` agent (``ChatOpenAI``, no tools: one model call per ``ainvoke``)
makes ``calls`` sequential calls:

* ``langchain``: plain ``agent.ainvoke``, no wakeline (the middleware is attached: outside a
  wakeline run it only passes the call on);
* ``adapter, in memory``: inside one wakeline run, ``with durable(ctx)``, on the in-memory core
  (``CoreDriver``: journaling and replay logic, no log);
* ``adapter, embedded log``: the same wakeline agent run by a real worker on the embedded log.

Prints microseconds per call (wall time / calls, after a warm-up).  Figures are not asserted
anywhere.  ``--nodelay`` sets ``TCP_NODELAY`` on the fake server's sockets (else each call
waits for loopback's delayed ACK, about 40 ms, which hides the overhead).
"""

from __future__ import annotations

import argparse
import asyncio
import socketserver
import time
from typing import Any

from langchain.agents import create_agent
from langchain_openai import ChatOpenAI

from benchmarks.harness import running_worker, scratch_dir
from wakeline import App, Context, jsonutil
from wakeline.actors.effects import run_effect
from wakeline.adapters.langchain import WakelineMiddleware, durable
from wakeline.schemas.events import RunStarted
from wakeline.testing import CoreDriver
from wakeline.testing.fake_llm import FakeLLMServer


def lc_agent(base_url: str) -> Any:
    model = ChatOpenAI(model="gpt-4o-mini", base_url=base_url, api_key="test-key", max_retries=0)
    return create_agent(model, [], system_prompt="Answer.", middleware=[WakelineMiddleware()])


def ask(i: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"question {i}"}]}


def make_app(base_url: str) -> App:
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    agent = lc_agent(base_url)

    @app.agent
    async def adapter(ctx: Context, calls: int) -> int:
        with durable(ctx):
            for i in range(calls):
                await agent.ainvoke(ask(i))
        return calls

    return app


async def plain(base_url: str, calls: int) -> float:
    agent = lc_agent(base_url)
    await agent.ainvoke(ask(-1))
    start = time.perf_counter()
    for i in range(calls):
        await agent.ainvoke(ask(i))
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


async def on_log(base_url: str, calls: int) -> float:
    with scratch_dir() as data:
        async with running_worker(make_app(base_url), data) as h:
            warm = await h.client.start_run("adapter", 1)
            await h.client.result(warm.run_id, from_offset=warm.from_offset)
            start = time.perf_counter()
            handle = await h.client.start_run("adapter", calls)
            await h.client.result(handle.run_id, from_offset=handle.from_offset)
            return time.perf_counter() - start


async def main(calls: int) -> None:
    with FakeLLMServer() as server:
        url = server.openai_base_url
        await in_memory(url, 2, "warm")
        rows = [
            ("langchain (no wakeline)", await plain(url, calls)),
            ("adapter, in memory", await in_memory(url, calls, "bench")),
            ("adapter, embedded log", await on_log(url, calls)),
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
