"""Agents with gates, policies, budgets and a non-idempotent tool, for governance tests.

Worker processes run ``governed_agents.py:app_from_env()`` (the fake server's URL in
``$WAKELINE_TEST_LLM_URL``, the test's directory in ``$WAKELINE_TEST_DATA``) on the embedded
log or on Kafka (:meth:`backends.Backend.worker_command`); they print ``worker-id <id>``
first.  The tool ``charge`` appends each execution to ``DATA/charges.txt``; if the file
``DATA/kill-in-tool`` exists, it removes it and SIGKILLs its own process right after the
charge (the crash that leaves the call in doubt).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from workers import DATA_ENV, llm_url

from wakeline import App, current_tool_call
from wakeline.actors.owner import on_run_unloaded
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


def app_from_env() -> App:
    """The app of a worker process: it also prints ``unloaded <run>`` for each run it
    unloads (only people can move it on), so a test can wait for that."""
    on_run_unloaded(lambda _worker, _partition, run_id: print(f"unloaded {run_id}", flush=True))
    return make_app(llm_url(), Path(os.environ[DATA_ENV]))
