"""A worker process on Kafka for soak, zombie and recovery tests.

    python tests/support/kafka_worker.py BOOTSTRAP OPENAI_BASE_URL PREFIX GROUP STATE_DIR SESSION_S

With ``WAKELINE_TEST_SPANS=FILE`` in the environment its spans are written to ``FILE`` as each
one ends (:mod:`span_file`), so they outlive a SIGKILL.

Runs the agent ``tenstep`` (10 sequential model calls through the real OpenAI SDK against the
fake server).  Topics are ``PREFIX.commands`` etc., so tests sharing a broker do not meet.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import span_file

from wakeline import App
from wakeline.actors.worker import Worker
from wakeline.providers.openai_compat import OpenAICompatProvider
from wakeline.testing.harness import prefixed_topics
from wakeline.topics.kafka.log import KafkaLog
from wakeline.topics.specs import Topics

CALLS = 10
SPANS = "WAKELINE_TEST_SPANS"


def topics_for(prefix: str) -> Topics:
    return prefixed_topics(prefix)


def make_app(base_url: str) -> App:
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    app.provider("openai", OpenAICompatProvider(base_url=base_url, api_key="test"))

    @app.agent
    async def tenstep(ctx: Any, name: str) -> list[str]:
        replies: list[str] = []
        for i in range(CALLS):
            reply = await ctx.llm(f"{name}: step {i}", max_tokens=32)
            replies.append(reply.text)
        return replies

    return app


async def main(argv: list[str]) -> None:
    bootstrap, base_url, prefix, group, state, session = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    log = await KafkaLog.open(bootstrap, client_id=f"{group}-worker")
    worker = Worker(
        make_app(base_url),
        log,
        state_dir=Path(state),
        topics=topics_for(prefix),
        group=group,
        session_timeout_s=float(session),
        telemetry=span_file.telemetry(Path(spans)) if (spans := os.environ.get(SPANS)) else None,
    )
    print(f"worker-id {worker.worker_id}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await worker.run(stop)
    finally:
        await log.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
