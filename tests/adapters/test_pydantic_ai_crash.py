"""SIGKILL a CLI worker running a pydantic-ai agent at each point of a model call; a fresh
process resumes the run.  The model is pydantic-ai's ``OpenAIChatModel`` (the official SDK)
talking to the local fake server, which counts every request: no request whose answer was
journaled is sent again, the output and cost are the clean run's, and the agent's tool ran
once per call with the same idempotency key."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from crash_agents import CRASH_ENV
from pai_crash_agents import RUNS, command
from workers import worker_env

from wakeline.client import Client
from wakeline.runtime import ensure_topics
from wakeline.schemas.events import Event, ModelCallCompleted, RunCompleted
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.topics.embedded.log import EmbeddedLog

CALLS = 2 * RUNS
CRASH_AT = 2  # the answer after the first tool call

pytestmark = pytest.mark.slow


def spawn(data: Path, server: FakeLLMServer, crash: str = "") -> subprocess.Popen[bytes]:
    env = worker_env(llm_url=server.openai_base_url, data=data, **{CRASH_ENV: crash})
    return subprocess.Popen(command(data), env=env)


async def run_once(data: Path, server: FakeLLMServer, crash: str) -> tuple[Any, list[Event]]:
    log = await EmbeddedLog.open(data)
    await ensure_topics(log, partitions=2)
    client = Client(log)
    handle = await client.start_run("biller", "the invoice")
    first = spawn(data, server, crash)
    second: subprocess.Popen[bytes] | None = None
    try:
        if crash:
            code = await asyncio.to_thread(first.wait, 60)
            assert code == -9, f"the crashing worker should die of SIGKILL, got {code}"
            second = spawn(data, server)
        result = await asyncio.wait_for(client.result(handle.run_id), 60)
        events = [e async for e in client.events(handle.run_id)]
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


@pytest.fixture(scope="module")
def clean() -> tuple[Any, Decimal, list[str]]:
    with FakeLLMServer() as server, tempfile.TemporaryDirectory() as tmp:
        result, events = asyncio.run(run_once(Path(tmp), server, ""))
        digests = [r.digest for r in server.requests()]
    assert len(digests) == CALLS and len(set(digests)) == CALLS
    return result, cost(events), digests


@pytest.mark.parametrize("mode", ["before_send", "after_answer", "after_journal"])
async def test_sigkill_mid_call_resumes_a_pydantic_ai_agent_without_resending(
    tmp_path: Path, mode: str, clean: tuple[Any, Decimal, list[str]]
) -> None:
    clean_result, clean_cost, clean_digests = clean
    with FakeLLMServer() as server:
        result, events = await run_once(tmp_path, server, f"{mode}:{CRASH_AT}")
        sent = Counter(r.digest for r in server.requests())

    assert result == clean_result
    assert cost(events) == clean_cost > 0
    assert [e.seq for e in events] == list(range(len(events)))
    assert [e.type for e in events].count("ModelCallCompleted") == CALLS
    assert isinstance(events[-1].payload, RunCompleted)
    assert set(sent) == set(clean_digests)
    resent = {digest for digest, n in sent.items() if n > 1}
    if mode == "after_answer":  # answered, never journaled: the only call sent again
        assert resent == {clean_digests[CRASH_AT - 1]}
    else:
        assert resent == set(), f"journaled calls were sent again: {resent}"
    charges = (tmp_path / "charges.txt").read_text().split()
    assert len(charges) == len(set(charges)) == RUNS  # each tool call ran once, one key each
