"""A session's third turn is SIGKILLed right after its first model call was journaled; a fresh
worker process resumes it: no model call of any turn is sent twice (the fake server's request
log) and the turn still sees the two before it."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from pathlib import Path

from crash_agents import CRASH_ENV, command
from workers import worker_env

from wakeline.client import Client
from wakeline.runtime import ensure_topics
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.topics.embedded.log import EmbeddedLog

TARGET = "session_agents.py:app_from_env()"


def spawn(data: Path, server: FakeLLMServer, crash: str = "") -> subprocess.Popen[bytes]:
    env = worker_env(llm_url=server.openai_base_url, data=data, **{CRASH_ENV: crash})
    return subprocess.Popen(command(data, TARGET), env=env)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


async def test_a_turn_killed_in_the_middle_resumes_without_resending_a_call(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    log = await EmbeddedLog.open(data)
    await ensure_topics(log, partitions=2)
    client = Client(log, views_dir=tmp_path / "views")
    procs: list[subprocess.Popen[bytes]] = []
    with FakeLLMServer() as server:
        try:
            procs.append(spawn(data, server))
            outputs = []
            for text in ("I am Ada", "I like kelp"):
                handle = await client.start_run("chat", text, session="c")
                outputs.append(await asyncio.wait_for(client.result(handle.run_id), 60))
            stop(procs[0])
            procs.append(spawn(data, server, "after_journal:1"))  # dies after turn 3's 1st call
            handle = await client.start_run("chat", "who am I?", session="c")
            assert await asyncio.to_thread(procs[1].wait, 60) == -9
            procs.append(spawn(data, server))
            third = await asyncio.wait_for(client.result(handle.run_id), 60)
            row = await client.session("c")
        finally:
            for proc in procs:
                stop(proc)
            await client.aclose()
            await log.close()
    requests = server.requests()
    assert len(requests) == 6 and set(Counter(r.digest for r in requests).values()) == {1}
    seen = [m["content"] for m in requests[4].body["messages"]]
    assert seen == ["I am Ada", outputs[0], "I like kelp", outputs[1], "turn 2: who am I?"]
    assert row is not None and [t.status for t in row.turns] == ["completed"] * 3
    assert row.turns[2].output == third
