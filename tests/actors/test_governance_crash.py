"""Gates and non-idempotent tools across SIGKILLed worker processes, on the embedded log and
on a real Kafka broker (where a killed worker's partitions move after its session timeout)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from backends import Backend, backend_for, backend_params
from workers import worker_env

from wakeline.client import Client, RunError
from wakeline.schemas.events import GateOpened, InDoubtResolved, ToolCallInDoubt
from wakeline.testing import wait_for_event
from wakeline.testing.fake_llm import FakeLLMServer

pytestmark = pytest.mark.slow


class Workers:
    def __init__(self, backend: Backend, server: FakeLLMServer) -> None:
        self.backend, self.server = backend, server
        self.procs: list[subprocess.Popen[str]] = []

    def start(self) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            self.backend.worker_command("governed_agents.py:app_from_env()", session_s=1.0),
            stdout=subprocess.PIPE,
            text=True,
            env=worker_env(llm_url=self.server.openai_base_url, data=self.backend.data),
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("worker-id "), line
        return proc, line.split()[1]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)


@pytest.fixture()
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as s:
        yield s


@pytest.fixture(params=backend_params())
async def env(
    request: pytest.FixtureRequest, tmp_path: Path, server: FakeLLMServer
) -> AsyncIterator[tuple[Client, Workers]]:
    backend = backend_for(request, tmp_path, "govcrash")
    log = await backend.create(partitions=2)
    workers = Workers(backend, server)
    try:
        yield Client(log, topics=backend.topics), workers
    finally:
        workers.stop()
        await log.close()


async def unloaded(proc: subprocess.Popen[str], run_id: str, timeout_s: float = 30) -> None:
    """Return once the worker process ``proc`` says it unloaded ``run_id`` (it prints
    ``unloaded <run id>`` when it does)."""

    def read() -> bool:  # False once the process exited without saying so
        assert proc.stdout is not None
        return any(line.split() == ["unloaded", run_id] for line in proc.stdout)

    try:
        found = await asyncio.wait_for(asyncio.to_thread(read), timeout_s)
    except TimeoutError:
        found = False
    assert found, f"worker {proc.pid} did not unload run {run_id} within {timeout_s}s"


async def test_approval_after_a_crash_resumes_once_on_another_worker(
    env: tuple[Client, Workers], server: FakeLLMServer
) -> None:
    client, workers = env
    first, _ = workers.start()
    handle = await client.start_run("gated", 99)
    await wait_for_event(client, handle.run_id, GateOpened)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    await client.approve(handle.run_id, "pay", "approved while no worker was alive")
    _, second_id = workers.start()
    output = await asyncio.wait_for(client.result(handle.run_id), 30)
    assert output.startswith("approved by ")
    events = [e async for e in client.events(handle.run_id)]
    gate_at = next(i for i, e in enumerate(events) if e.type == "GateResolved")
    assert [e.type for e in events].count("GateResolved") == 1
    assert all(e.writer == second_id for e in events[gate_at:])
    assert server.received == 1


@pytest.mark.parametrize("resolution", ["RETRY", "SUPPLY", "FAIL"])
async def test_an_in_doubt_tool_is_never_rerun_by_itself(
    env: tuple[Client, Workers], tmp_path: Path, resolution: str
) -> None:
    client, workers = env
    charges = tmp_path / "charges.txt"
    (tmp_path / "kill-in-tool").touch()  # the tool charges, then its process is SIGKILLed
    first, _ = workers.start()
    handle = await client.start_run("payer", 25)
    assert first.wait(30) == -signal.SIGKILL
    assert len(charges.read_text().splitlines()) == 1
    second, _ = workers.start()
    doubt = await wait_for_event(client, handle.run_id, ToolCallInDoubt)
    assert isinstance(doubt.payload, ToolCallInDoubt)
    await unloaded(second, handle.run_id)  # idle: no call of the run in flight any more
    assert len(charges.read_text().splitlines()) == 1  # not re-run automatically
    step = doubt.payload.step
    key = charges.read_text().split()[0]
    assert key == f"{handle.run_id}:{step}"

    if resolution == "RETRY":
        await client.resolve_in_doubt(handle.run_id, step, "RETRY")
        assert await client.result(handle.run_id) == f"charged 25 with key {key}"
        lines = charges.read_text().splitlines()
        assert len(lines) == 2 and {line.split()[0] for line in lines} == {key}  # same key
    elif resolution == "SUPPLY":
        await client.resolve_in_doubt(handle.run_id, step, "SUPPLY", "charged 25 (confirmed)")
        assert await client.result(handle.run_id) == "charged 25 (confirmed)"
        assert len(charges.read_text().splitlines()) == 1
    else:
        await client.resolve_in_doubt(handle.run_id, step, "FAIL")
        with pytest.raises(RunError, match="ToolCallInDoubt"):
            await client.result(handle.run_id)
        assert len(charges.read_text().splitlines()) == 1
    events = [e async for e in client.events(handle.run_id)]
    resolved = [e.payload for e in events if isinstance(e.payload, InDoubtResolved)]
    assert len(resolved) == 1 and resolved[0].resolution == resolution
    assert resolved[0].by == ""
