"""A worker process for the Kafka recovery benchmark (mock model with a small latency).

python -m benchmarks.kafka_worker BOOTSTRAP GROUP STATE_DIR SESSION_S
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from benchmarks.harness import CHAIN, chain
from wakeline.actors.worker import Worker
from wakeline.core.app import App
from wakeline.providers.mock import MockModel
from wakeline.topics.kafka.log import KafkaLog

MODEL_LATENCY_S = 0.05


def recovery_app() -> App:
    app = App(name="bench-recovery", default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel(latency_s=MODEL_LATENCY_S))
    app.agent(chain, name=CHAIN)
    return app


async def main(bootstrap: str, group: str, state: str, session_s: str) -> None:
    log = await KafkaLog.open(bootstrap)
    worker = Worker(
        recovery_app(), log, state_dir=Path(state), group=group, session_timeout_s=float(session_s)
    )
    print(f"worker-id {worker.worker_id}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await worker.run(stop)
    finally:
        await log.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
