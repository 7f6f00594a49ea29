"""A tool that requires approval, the way users run it: a CLI worker is SIGKILLed while the
tool's gate is open, a person approves from another process while no worker runs, the worker
is restarted in place, and the tool runs exactly once."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from wakeline.client import Client
from wakeline.runtime import ensure_topics, open_log
from wakeline.schemas.events import (
    GateOpened,
    GateResolved,
    ToolCallCompleted,
    ToolCallInDoubt,
    ToolCallRequested,
)

AGENTS = str(Path(__file__).parents[1] / "support" / "cli_agents.py")
CLI = [sys.executable, "-m", "wakeline.cli"]


async def spawn(argv: list[str], env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*argv, env=env, cwd=cwd)


async def test_the_tool_runs_once_after_a_crash_while_its_gate_was_open(tmp_path: Path) -> None:
    ledger = tmp_path / "wires.txt"
    env = {**os.environ, "WAKELINE_DATA": str(tmp_path / "data"), "WIRE_LEDGER": str(ledger)}
    worker = await spawn([*CLI, "worker", AGENTS], env, tmp_path)
    try:
        log = await open_log(data=tmp_path / "data")
        await ensure_topics(log)
        async with Client(log, views_dir=tmp_path / "client-views") as client:
            run_id = (await client.start_run("wire", 7)).run_id
            async for event in client.events(run_id):
                if isinstance(event.payload, GateOpened):
                    assert event.payload.name == "tool:wire_money"
                    break
            worker.kill()  # SIGKILL while the gate is open
            await worker.wait()
            assert not ledger.exists()
            approve = [*CLI, "approve", run_id, "tool:wire_money", "--reason", "checked"]
            assert await (await spawn(approve, env, tmp_path)).wait() == 0
            worker = await spawn([*CLI, "worker", AGENTS], env, tmp_path)  # restarted in place
            assert await client.result(run_id) == "sent 7"
            journal = [e async for e in client.events(run_id)]
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert ledger.read_text().splitlines() == ["7"]  # the tool ran exactly once
    assert [e.seq for e in journal] == list(range(len(journal)))
    payloads = [e.payload for e in journal]
    assert sum(isinstance(p, ToolCallRequested) for p in payloads) == 1
    assert sum(isinstance(p, ToolCallCompleted) for p in payloads) == 1
    assert not any(isinstance(p, ToolCallInDoubt) for p in payloads)
    [resolved] = [p for p in payloads if isinstance(p, GateResolved)]
    assert resolved.approved and resolved.reason == "checked"
    gate_seq = next(e.seq for e in journal if isinstance(e.payload, GateOpened))
    tool_seq = next(e.seq for e in journal if isinstance(e.payload, ToolCallRequested))
    assert gate_seq < tool_seq  # the gate came before the tool was even requested
