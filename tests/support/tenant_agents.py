"""An app whose model costs $1 per output token, for tenant budget tests.

Its worker processes run ``tenant_agents.py:make_app()`` on the embedded log or on Kafka
(:meth:`backends.Backend.worker_command`; the tenant ledger is the topic ``PREFIX.ledger``
there).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from wakeline import App
from wakeline.core.pricing import ModelPrice, PriceTable
from wakeline.providers.mock import MockModel

MAX_TOKENS = 12
PRICE = ModelPrice(input_per_mtok=Decimal(0), output_per_mtok=Decimal(1_000_000))
"""$1 per output token, nothing for input: a call costs its output tokens in dollars and
reserves MAX_TOKENS dollars."""


def make_app() -> App:
    app = App(default_provider="mock", default_model="pricey", prices=PriceTable({"pricey": PRICE}))
    app.provider("mock", MockModel(latency_s=0.05))

    @app.agent
    async def shopper(ctx: Any, n: int) -> int:
        for i in range(3):
            await ctx.llm(f"item {i} for shopper {n}", max_tokens=MAX_TOKENS)
        return n

    @app.agent
    async def frugal(ctx: Any, n: int) -> int:
        """Reserves $100 a call (max_tokens) but spends only its reply's few tokens."""
        for i in range(3):
            await ctx.llm(f"item {i} for frugal {n}", max_tokens=100)
        return n

    return app
