"""A small app for CLI tests of people-in-the-loop commands (mock model, no network)."""

from __future__ import annotations

from typing import Any

from wakeline import App
from wakeline.providers.mock import MockModel

app = App(default_provider="mock", default_model="mock-1")
app.provider("mock", MockModel())


@app.agent
async def gated(ctx: Any, amount: int) -> str:
    decision = await ctx.approval("pay", {"amount": amount})
    return f"{'approved' if decision.approved else 'rejected'} by {decision.by}"


@app.agent
async def chatty(ctx: Any, calls: int) -> int:
    for i in range(calls):
        await ctx.llm(f"question {i}", max_tokens=10)
    return calls
