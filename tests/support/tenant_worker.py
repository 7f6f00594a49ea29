"""A worker process whose model costs $1 per output token, for tenant budget tests.

    python tests/support/tenant_worker.py DATA_DIR [BOOTSTRAP PREFIX GROUP]

On the embedded log in DATA_DIR, or on Kafka (:mod:`backends`; the tenant ledger is the topic
``PREFIX.ledger`` there).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from backends import from_worker_args

from wakeline import App
from wakeline.actors.worker import Worker
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

    return app


async def main(data: Path, backend_args: list[str]) -> None:
    backend = from_worker_args(data, backend_args)
    log = await backend.open_log(client_id=f"{backend.group}-worker")
    worker = Worker(
        make_app(),
        log,
        state_dir=data / "state" / str(os.getpid()),
        session_timeout_s=backend.session_s or 2.0,
        topics=backend.topics,
        group=backend.group,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await worker.run(stop)
    finally:
        await log.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2:]))
