"""SIGKILL a worker process at each point of a model call; a fresh process resumes the run.

The model is the real OpenAI SDK talking to a local fake server that counts every request:
no model call whose result was journaled is ever sent again, the output is the clean run's,
and so is the recorded cost.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from crash_agents import CRASH_ENV, command
from workers import worker_env

from wakeline.client import Client
from wakeline.runtime import ensure_topics
from wakeline.schemas.events import Event, ModelCallCompleted, RunCompleted
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.topics.embedded.log import EmbeddedLog

STEPS = 4
CRASH_AT = 2

pytestmark = pytest.mark.slow


def spawn(data: Path, server: FakeLLMServer, crash: str = "") -> subprocess.Popen[bytes]:
    env = worker_env(llm_url=server.openai_base_url, **{CRASH_ENV: crash})
    return subprocess.Popen(command(data), env=env)


async def run_once(data: Path, server: FakeLLMServer, crash: str) -> tuple[Any, list[Event]]:
    log = await EmbeddedLog.open(data)
    await ensure_topics(log, partitions=2)
    client = Client(log)
    handle = await client.start_run("planner", "ship the release")
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
        await log.close()


def cost(events: list[Event]) -> Decimal:
    return sum(
        (
            e.payload.cost_usd or Decimal(0)
            for e in events
            if isinstance(e.payload, ModelCallCompleted)
        ),
        Decimal(0),
    )


@pytest.fixture(scope="module")
def clean() -> tuple[Any, Decimal, list[str]]:
    import tempfile

    with FakeLLMServer() as server, tempfile.TemporaryDirectory() as tmp:
        result, events = asyncio.run(run_once(Path(tmp), server, ""))
        digests = [r.digest for r in server.requests()]
    assert len(digests) == STEPS and len(set(digests)) == STEPS
    return result, cost(events), digests


@pytest.mark.parametrize("mode", ["before_send", "after_answer", "after_journal"])
async def test_sigkill_mid_call_resumes_without_resending_journaled_calls(
    tmp_path: Path, mode: str, clean: tuple[Any, Decimal, list[str]]
) -> None:
    clean_result, clean_cost, clean_digests = clean
    with FakeLLMServer() as server:
        result, events = await run_once(tmp_path, server, f"{mode}:{CRASH_AT}")
        sent = Counter(r.digest for r in server.requests())

    assert result == clean_result
    assert cost(events) == clean_cost > 0
    assert [e.seq for e in events] == list(range(len(events)))
    assert [e.type for e in events].count("ModelCallCompleted") == STEPS
    assert isinstance(events[-1].payload, RunCompleted)
    assert set(sent) == set(clean_digests)
    crashed_call = clean_digests[CRASH_AT - 1]
    resent = {digest for digest, n in sent.items() if n > 1}
    if mode == "after_answer":
        # answered but never journaled: the only call that may be (and is) sent again
        assert resent == {crashed_call} and sent[crashed_call] == 2
    else:
        assert resent == set(), f"journaled calls were sent again: {resent}"
    assert sum(sent.values()) == STEPS + (1 if mode == "after_answer" else 0)
