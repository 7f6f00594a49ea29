"""A small app for CLI tests of people-in-the-loop commands (mock model, no network)."""

from __future__ import annotations

import os
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


@app.tool(requires_approval=True, idempotent=False)
def wire_money(amount: int) -> str:
    """Moves money: a person approves each call; every execution is appended to
    ``$WIRE_LEDGER`` so a test can count them."""
    with open(os.environ["WIRE_LEDGER"], "a") as ledger:
        ledger.write(f"{amount}\n")
    return f"sent {amount}"


@app.agent
async def wire(ctx: Any, amount: int) -> str:
    return str(await ctx.tool("wire_money", amount=amount))
