"""A worker process for crash tests: it SIGKILLs itself at a chosen point of a model call.

    python tests/support/crash_worker.py DATA_DIR OPENAI_BASE_URL [MODE:N]

MODE is ``before_send`` (the request is journaled, the HTTP request is not sent yet),
``after_answer`` (the provider answered, the result is not journaled yet) or ``after_journal``
(the result was appended).  The kill points are put in place by wrapping the ports -- the model
port and the log port -- exactly as the worker sees them, not by hooks in wakeline itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wakeline import App
from wakeline.actors.worker import Worker
from wakeline.core.model import DeltaSink, ModelRequest, ModelResponse
from wakeline.providers.openai_compat import OpenAICompatProvider
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.port import OffsetCommit, OutRecord, PartitionWriter

STEPS = 4


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillingProvider:
    def __init__(self, inner: OpenAICompatProvider, mode: str, at: int) -> None:
        self._inner, self._mode, self._at, self._calls = inner, mode, at, 0

    @property
    def name(self) -> str:
        return self._inner.name

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> ModelResponse:
        self._calls += 1
        if self._mode == "before_send" and self._calls == self._at:
            die()
        response = await self._inner.complete(request, on_delta=on_delta)
        if self._mode == "after_answer" and self._calls == self._at:
            die()
        return response


class KillingWriter:
    def __init__(self, inner: PartitionWriter, at: int, counter: list[int]) -> None:
        self._inner, self._at, self._counter = inner, at, counter

    @property
    def partition(self) -> int:
        return self._inner.partition

    async def append(
        self, topic: str, records: Sequence[OutRecord], *, commit: OffsetCommit | None = None
    ) -> list[int]:
        offsets = await self._inner.append(topic, records, commit=commit)
        for record in records:
            if record.headers and dict(record.headers).get("type") == b"ModelCallCompleted":
                self._counter[0] += 1
                if self._counter[0] == self._at:
                    die()
        return offsets

    async def close(self) -> None:
        await self._inner.close()


class KillingLog(EmbeddedLog):
    def arm(self, at: int) -> None:
        self._kill_at, self._kill_counter = at, [0]

    async def writer(self, writer_id: str, partition: int) -> Any:
        inner = await super().writer(writer_id, partition)
        if getattr(self, "_kill_at", 0):
            return KillingWriter(inner, self._kill_at, self._kill_counter)
        return inner


def make_app(base_url: str, mode: str = "", at: int = 0) -> App:
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    provider = OpenAICompatProvider(base_url=base_url, api_key="test-key")
    app.provider("openai", KillingProvider(provider, mode, at) if mode else provider)

    @app.agent
    async def planner(ctx: Any, goal: str) -> dict[str, Any]:
        notes: list[str] = []
        for step in range(STEPS):
            reply = await ctx.llm(
                [
                    {"role": "system", "content": "You plan in small steps."},
                    {"role": "user", "content": f"step {step} of {goal}; so far: {notes}"},
                ],
                max_tokens=64,
            )
            notes.append(reply.text)
        return {"goal": goal, "notes": notes}

    return app


async def main(data: Path, base_url: str, crash: str) -> None:
    mode, _, at = crash.partition(":")
    log = KillingLog(data)
    await log.start()
    if mode == "after_journal":
        log.arm(int(at))
    app = make_app(base_url, "" if mode == "after_journal" else mode, int(at or 0))
    worker = Worker(app, log, state_dir=data / "state" / f"w{os.getpid()}", session_timeout_s=1.0)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await worker.run(stop)
    finally:
        await log.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""))
