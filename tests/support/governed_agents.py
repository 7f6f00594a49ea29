"""Agents with gates, policies, budgets and a non-idempotent tool, for governance tests.

Also a worker process, on the embedded log in DATA_DIR or on Kafka (:mod:`backends`)::

    python tests/support/governed_agents.py DATA_DIR OPENAI_BASE_URL [BOOTSTRAP PREFIX GROUP]

It prints ``worker-id <id>`` first.  The tool ``charge`` appends each execution to
``DATA_DIR/charges.txt``; if the file ``DATA_DIR/kill-in-tool`` exists, it removes it and
SIGKILLs its own process right after the charge (the crash that leaves the call in doubt).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from backends import from_worker_args

from wakeline import App, current_tool_call
from wakeline.actors.owner import on_run_unloaded
from wakeline.actors.worker import Worker
from wakeline.core.governance import CallInfo, Deny
from wakeline.providers.openai_compat import OpenAICompatProvider


def make_app(base_url: str, data: Path) -> App:
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    app.provider("openai", OpenAICompatProvider(base_url=base_url, api_key="test"))

    @app.policy
    def no_big_models(call: CallInfo) -> Deny | None:
        if call.kind == "model" and call.target == "gpt-4o":
            return Deny("gpt-4o is not allowed for this team")
        if call.kind == "model" and call.target == "o1":
            return Deny("o1 needs a human's approval", suspend=True)
        return None

    @app.policy
    def small_refunds(call: CallInfo) -> Deny | None:
        if call.kind == "tool" and call.target == "refund" and call.request["amount"] > 100:
            return Deny(f"refund of {call.request['amount']} is over 100")
        return None

    @app.tool(idempotent=False)
    def charge(amount: int) -> str:
        key = current_tool_call().idempotency_key
        with (data / "charges.txt").open("a") as ledger:
            ledger.write(f"{key} {amount}\n")
        flag = data / "kill-in-tool"
        if flag.exists():
            flag.unlink()
            os.kill(os.getpid(), signal.SIGKILL)
        return f"charged {amount} with key {key}"

    @app.tool
    def refund(amount: int) -> str:
        return f"refunded {amount}"

    @app.agent
    async def ask(ctx: Any, model: str) -> str:
        return str((await ctx.llm(f"hello from {model}", model=model, max_tokens=50)).text)

    @app.agent
    async def spender(ctx: Any, calls: int) -> int:
        for i in range(calls):
            await ctx.llm(f"expensive question {i}", max_tokens=1000)
        return calls

    @app.agent
    async def gated(ctx: Any, amount: int) -> str:
        decision = await ctx.approval("pay", {"amount": amount})
        if not decision.approved:
            return f"rejected by {decision.by}: {decision.reason}"
        note = await ctx.llm(f"write a receipt for {amount}")
        return f"approved by {decision.by}; {note.text}"

    @app.agent
    async def hurried(ctx: Any, seconds: float) -> str:
        decision = await ctx.approval("quick", None, timeout=seconds)
        return "timed out" if decision.timed_out else "decided"

    @app.agent
    async def payer(ctx: Any, amount: int) -> str:
        receipt = await ctx.tool("charge", amount=amount)
        return str(receipt)

    @app.agent
    async def refunder(ctx: Any, amount: int) -> str:
        return str(await ctx.tool("refund", amount=amount))

    return app


async def _worker(data: Path, base_url: str, backend_args: list[str]) -> None:
    backend = from_worker_args(data, backend_args)
    log = await backend.open_log(client_id=f"{backend.group}-worker")
    worker = Worker(
        make_app(base_url, data),
        log,
        state_dir=data / "state" / str(os.getpid()),
        session_timeout_s=backend.session_s or 1.0,
        topics=backend.topics,
        group=backend.group,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"worker-id {worker.worker_id}", flush=True)
    # tell the test each run this worker unloads (only people can move it on)
    on_run_unloaded(lambda _worker, _partition, run_id: print(f"unloaded {run_id}", flush=True))
    try:
        await worker.run(stop)
    finally:
        await log.close()


if __name__ == "__main__":
    asyncio.run(_worker(Path(sys.argv[1]), sys.argv[2], sys.argv[3:]))
