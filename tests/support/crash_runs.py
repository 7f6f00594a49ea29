"""One run of a crash test: start it, let a worker process (maybe) SIGKILL itself, resume it
in a fresh process, and read what the run did."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from crash_agents import CRASH_ENV, command
from workers import SUPPORT, worker_env

from wakeline import App, jsonutil
from wakeline.client import Client
from wakeline.runtime import ensure_topics, load_target
from wakeline.schemas.events import Event, ModelCallCompleted, ModelCallRequested, RunCompleted
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.topics.embedded.log import EmbeddedLog


def spawn(
    data: Path, server: FakeLLMServer, target: str, crash: str = ""
) -> subprocess.Popen[bytes]:
    env = worker_env(llm_url=server.openai_base_url, data=data, **{CRASH_ENV: crash})
    return subprocess.Popen(command(data, target), env=env)


async def run_once(
    data: Path, server: FakeLLMServer, crash: str, *, target: str, agent: str, input: Any
) -> tuple[Any, list[Event]]:
    """The run's result and events; with ``crash`` (``MODE:N``) the first worker must die of
    SIGKILL and a second one finishes the run."""
    log = await EmbeddedLog.open(data)
    await ensure_topics(log, partitions=2)
    client = Client(log)
    handle = await client.start_run(agent, input)
    first = spawn(data, server, target, crash)
    second: subprocess.Popen[bytes] | None = None
    try:
        if crash:
            code = await asyncio.to_thread(first.wait, 60)
            assert code == -9, f"the crashing worker should die of SIGKILL, got {code}"
            second = spawn(data, server, target)
        result = await asyncio.wait_for(client.result(handle.run_id), 60)
        events = [e async for e in client.events(handle.run_id)]
        slots = sorted(p.name for p in (data / "state").iterdir())
        assert slots == ["worker-0"], f"the restarted worker took over the dead one's slot: {slots}"
        return result, events
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        await client.aclose()
        await log.close()


def cost(events: list[Event]) -> Decimal:
    done = [e.payload for e in events if isinstance(e.payload, ModelCallCompleted)]
    return sum((c.cost_usd or Decimal(0) for c in done), Decimal(0))


Clean = tuple[Any, Decimal, list[str]]


@dataclass(frozen=True)
class Scenario:
    """One agent crashed at each point of its ``crash_at``-th model call, checked against an
    uncrashed run of the same agent."""

    target: str
    agent: str
    input: Any
    calls: int
    crash_at: int
    charges: int | None = None  # the agent's side-effecting tool calls, logged to charges.txt

    async def run(self, data: Path, server: FakeLLMServer, crash: str) -> tuple[Any, list[Event]]:
        return await run_once(
            data, server, crash, target=self.target, agent=self.agent, input=self.input
        )

    def clean(self) -> Clean:
        """The uncrashed run's output, cost and request digests (one per call, all distinct)."""
        with FakeLLMServer() as server, tempfile.TemporaryDirectory() as tmp:
            result, events = asyncio.run(self.run(Path(tmp), server, ""))
            digests = [r.digest for r in server.requests()]
        assert len(digests) == self.calls and len(set(digests)) == self.calls
        return result, cost(events), digests

    async def crash_and_check(self, data: Path, mode: str, clean: Clean) -> None:
        """Crash at ``mode``, resume, and compare with the clean run: same output and cost,
        dense seqs, and no call whose answer was journaled sent again."""
        clean_result, clean_cost, clean_digests = clean
        with FakeLLMServer() as server:
            result, events = await self.run(data, server, f"{mode}:{self.crash_at}")
            sent = Counter(r.digest for r in server.requests())
        assert result == clean_result
        assert cost(events) == clean_cost > 0
        assert [e.seq for e in events] == list(range(len(events)))
        assert [e.type for e in events].count("ModelCallCompleted") == self.calls
        assert isinstance(events[-1].payload, RunCompleted)
        assert set(sent) == set(clean_digests)
        crashed_call = clean_digests[self.crash_at - 1]
        resent = {digest for digest, n in sent.items() if n > 1}
        if mode == "after_answer":
            # answered but never journaled: the only call that may be (and is) sent again
            assert resent == {crashed_call} and sent[crashed_call] == 2
        else:
            assert resent == set(), f"journaled calls were sent again: {resent}"
        assert sum(sent.values()) == self.calls + (1 if mode == "after_answer" else 0)
        if self.charges is not None:  # each tool call ran once, one idempotency key each
            charges = (data / "charges.txt").read_text().split()
            assert len(charges) == len(set(charges)) == self.charges


@contextlib.asynccontextmanager
async def served(data: Path, server: FakeLLMServer, target: str) -> AsyncIterator[Client]:
    """A client of a fresh embedded log in ``data``, with a CLI worker process serving
    ``target`` on it (stopped on exit)."""
    log = await EmbeddedLog.open(data)
    await ensure_topics(log, partitions=2)
    client = Client(log)
    worker = spawn(data, server, target)
    try:
        yield client
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(10)
        await client.aclose()
        await log.close()


def load_app(target: str) -> App:
    """The scenario's app in this process, with no model server reachable."""
    app, _ = load_target(str(SUPPORT / target))
    return app


async def stream_followed(client: Client, server: FakeLLMServer, agent: str) -> tuple[str, str]:
    """Start ``agent`` (one streamed model call) with ``server`` holding its answer until a
    watcher follows the call: the text of the live deltas joined, and the journaled text."""
    server.chunk_delay_s = 0.01
    server.hold()
    handle = await client.start_run(agent, "tell me a story")
    deltas: list[str] = []
    completed: list[ModelCallCompleted] = []
    async for update in client.watch(handle.run_id, from_offset=handle.from_offset, deltas=True):
        if update.delta is not None:
            deltas.append(update.delta.text)
        payload = update.event.payload if update.event is not None else None
        if isinstance(payload, ModelCallRequested):
            assert payload.stream
            server.release()
        elif isinstance(payload, ModelCallCompleted):
            completed.append(payload)
    [done] = completed
    assert len(deltas) > 1, deltas
    return "".join(deltas), str(jsonutil.loads(done.message)["content"])
