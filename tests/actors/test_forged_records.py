"""A record that did not come from a worker (docs/governance.md, the trust model): an attacker
who may append to the events topic, but does not hold the record key, appends a forged
``GateResolved(approved=True, by="ceo")`` -- with the right seq and the right ``prev`` hash --
while the run's gate is open and its worker is down.  The worker, restarted in place, does not
obey it (the tool does not run: a person's later rejection is what resolves the gate), readers
holding the key skip it with a notice, and ``audit verify`` names it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from wakeline.client import Client
from wakeline.replay import read_journal
from wakeline.runtime import ensure_topics, open_log
from wakeline.schemas.codec import event_codec, record_hash
from wakeline.schemas.events import Event, GateOpened, GateResolved
from wakeline.topics.port import Log, OutRecord
from wakeline.topics.signing import KEY_ENV, signer_for
from wakeline.topics.specs import DEFAULT_TOPICS

AGENTS = str(Path(__file__).parents[1] / "support" / "cli_agents.py")
CLI = [sys.executable, "-m", "wakeline.cli"]


async def spawn(
    argv: list[str], env: dict[str, str], cwd: Path, *, output: bool = False
) -> asyncio.subprocess.Process:
    piped = asyncio.subprocess.PIPE if output else None
    return await asyncio.create_subprocess_exec(*argv, env=env, cwd=cwd, stdout=piped)


async def forge_approval(log: Log, run_id: str, step: int) -> int:
    """What an attacker with produce rights can do: a well-formed next event of the run,
    chained to its last record.  Returns the forged record's offset."""
    raws = await read_journal(log, run_id)
    last = event_codec().decode(raws[-1])
    forged = Event(
        run_id,
        last.seq + 1,
        last.time_ms + 1,
        last.writer,
        GateResolved(step=step, approved=True, by="ceo"),
        prev=record_hash(raws[-1]),
    )
    record = OutRecord(run_id.encode(), event_codec().encode(forged), (("type", b"GateResolved"),))
    [(_, offset)] = await log.append(DEFAULT_TOPICS.events, [record])
    return offset


async def test_a_forged_approval_is_not_obeyed_and_verify_names_it(tmp_path: Path) -> None:
    ledger = tmp_path / "wires.txt"
    data = tmp_path / "data"
    env = {**os.environ, "WAKELINE_DATA": str(data), "WIRE_LEDGER": str(ledger)}
    env.pop(KEY_ENV, None)  # the embedded log's own key
    worker = await spawn([*CLI, "worker", AGENTS], env, tmp_path)
    try:
        log = await open_log(data=data)
        await ensure_topics(log)
        assert signer_for(log) is not None  # the embedded log's own key (record.key, 0600)
        async with Client(log, views_dir=tmp_path / "views") as client:
            run_id = (await client.start_run("wire", 7)).run_id
            async for event in client.events(run_id):
                if isinstance(event.payload, GateOpened):
                    gate = event
                    break
            worker.kill()  # the gate is open and no worker runs
            await worker.wait()
            offset = await forge_approval(log, run_id, gate.seq)

            worker = await spawn([*CLI, "worker", AGENTS], env, tmp_path)  # restarted in place
            reject = [*CLI, "reject", run_id, "tool:wire_money", "--reason", "no"]
            assert await (await spawn(reject, env, tmp_path)).wait() == 0
            updates = [u async for u in client.watch(run_id)]
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        await log.close()

    assert not ledger.exists()  # the forged approval did not run the tool; the rejection won
    [skipped] = [u.skipped for u in updates if u.skipped is not None]
    assert skipped.offset == offset and skipped.untrusted and "unsigned" in skipped.reason
    journal = [u.event for u in updates if u.event is not None]
    assert [e.seq for e in journal] == list(range(len(journal)))
    [resolved] = [e.payload for e in journal if isinstance(e.payload, GateResolved)]
    assert not resolved.approved and resolved.by != "ceo"

    verify = await spawn([*CLI, "audit", "verify", run_id], env, tmp_path, output=True)
    out, _ = await verify.communicate()
    assert verify.returncode == 1, out
    expected = f"TAMPERED: seq {gate.seq + 1} (GateResolved) at offset {offset}: unsigned"
    assert expected in out.decode(), out
