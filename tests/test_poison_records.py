"""An undecodable record keyed by a run in the events topic: every reader of the run skips it
with a notice naming its offset, and the run's events, result and CLI output are intact."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cli_agents import app
from click.testing import CliRunner

from wakeline.cli.main import main
from wakeline.schemas.events import GateOpened
from wakeline.testing import local_runtime, wait_for_event
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import OutRecord

POISON = b"\xc3\x01" + b"\xff" * 12  # the single-object marker, then garbage


async def test_readers_skip_a_poison_record_and_name_its_offset(tmp_path: Path) -> None:
    async with local_runtime(app, tmp_path) as rt:
        handle = await rt.client.start_run("gated", 5, run_id="p1")
        await wait_for_event(rt.client, "p1", GateOpened)
        [(partition, offset)] = await rt.log.append(rt.topics.events, [OutRecord(b"p1", POISON)])
        assert partition == partition_for(b"p1", await rt.log.partition_count(rt.topics.events))
        await rt.client.approve("p1", "pay")
        result = await rt.client.result("p1", from_offset=handle.from_offset)
        assert str(result).startswith("approved by")

        updates = [u async for u in rt.client.watch("p1")]
        skipped = [u.skipped for u in updates if u.skipped is not None]
        assert [(s.partition, s.offset) for s in skipped] == [(partition, offset)]
        assert f"{rt.topics.events}[{partition}]@{offset}" in str(skipped[0])
        events = [u.event for u in updates if u.event is not None]
        assert [e.seq for e in events] == list(range(len(events)))
        assert events[-1].type == "RunCompleted"

    tail = ["--data", str(tmp_path), "tail", "p1"]
    result = await asyncio.to_thread(CliRunner().invoke, main, tail)
    assert result.exit_code == 0, result.output
    assert f"skipped an undecodable record at wakeline.events[{partition}]@{offset}" in (
        result.output.replace("\n", " ")
    )
    assert "RunCompleted" in result.output
