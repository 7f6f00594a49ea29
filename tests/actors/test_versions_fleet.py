"""Agent versions across worker processes on one embedded log: a worker hosting the new
version of an agent joins while runs of the old version wait; those complete on the old
worker with the old prompt, new runs use the new version; a run whose version no live worker
hosts is listed as orphaned, left untouched, and its commands are refused with a notice."""

from __future__ import annotations

import asyncio
from pathlib import Path

from version_fleet import (
    ALL,
    PARTITIONS,
    VersionWorker,
    asked,
    at_gate,
    cli_process,
    finish,
    left_by_v1,
    opened,  # noqa: F401  (the fixture ``fleet``)
    run_id_on,
    version_of,
)

from wakeline.client import Client
from wakeline.replay import read_journal
from wakeline.schemas.commands import CommandRejected
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.topics.partitioner import partition_for


async def test_old_runs_drain_on_the_old_worker_and_new_runs_use_the_new_version(
    fleet: tuple[Path, Client, FakeLLMServer],
) -> None:
    data, client, server = fleet
    old = await VersionWorker.spawn(data, server, "v1()", "old")
    new: VersionWorker | None = None
    try:
        await old.owns(ALL)
        waiting = [
            (await client.start_run("summarize", topic)).run_id for topic in ("kelp", "otters")
        ]
        for run_id in waiting:
            await at_gate(client, run_id, "start")
        pinned = {partition_for(r.encode(), PARTITIONS) for r in waiting}

        new = await VersionWorker.spawn(data, server, "v2()", "new")
        await new.owns(ALL - pinned)  # where new runs start
        await old.owns(pinned)  # the old version's runs stay where they are

        # a partition is the unit that moves: a new run on one the old worker holds is v1
        beside = await client.start_run("summarize", "lichen", run_id=run_id_on(pinned))
        await at_gate(client, beside.run_id, "start")
        waiting.append(beside.run_id)

        fresh = await client.start_run("summarize", "moss", run_id=run_id_on(ALL - pinned))
        events = await finish(client, fresh.run_id)
        assert version_of(events) == "2"
        assert asked(server, "moss") == [("new", "Summarize moss in five words.")]
        assert {e.writer for e in events} == {new.worker_id}

        for run_id, topic in zip(waiting, ("kelp", "otters", "lichen"), strict=True):
            events = await finish(client, run_id)
            assert version_of(events) == "1"
            assert asked(server, topic) == [("old", f"Summarize {topic}.")]
            assert {e.writer for e in events} == {old.worker_id}

        await old.owns(set())  # drained: every partition moves to the new version
        await new.owns(ALL)
        later = await client.start_run("summarize", "ferns", run_id=run_id_on(pinned))
        events = await finish(client, later.run_id)
        assert version_of(events) == "2" and {e.writer for e in events} == {new.worker_id}
    finally:
        for worker in (old, new):
            if worker is not None:
                await worker.stop()


async def test_a_run_no_live_worker_hosts_is_listed_orphaned_and_left_untouched(
    fleet: tuple[Path, Client, FakeLLMServer],
) -> None:
    data, client, server = fleet
    run_id = await left_by_v1(data, client, server)
    row = await client.get(run_id)
    assert row is not None and row.version == "1" and not row.orphaned  # no live worker at all

    new = await VersionWorker.spawn(data, server, "v2()", "new")
    try:
        await new.owns(ALL)
        await new.until(lambda w: any(f"run {run_id} left untouched" in x for x in w.lines))
        row = await client.get(run_id)
        assert row is not None and row.orphaned and row.status == "suspended"
        assert [r.run_id for r in (await client.list(orphaned=True)).items] == [run_id]

        code, out = await cli_process(data, "ls", "--orphaned")
        assert code == 0 and run_id in out and "orphaned" in out and "summarize@1" in out, out
        code, out = await cli_process(data, "show", run_id)
        assert code == 0 and "no live worker hosts version '1'" in out, out

        before = await read_journal(client.log, run_id)
        await client.approve(run_id, "start")
        async with asyncio.timeout(30):
            async for update in client.watch(run_id):
                notice = update.notice
                if notice is not None and isinstance(notice.payload, CommandRejected):
                    reason = notice.payload.reason
                    assert "version '1' of agent 'summarize' is not hosted" in reason
                    break
        assert await read_journal(client.log, run_id) == before  # nothing appended
        assert server.requests() == []

        pinned = await client.start_run("summarize", "moss", version="1")  # not hosted
        async with asyncio.timeout(30):
            async for update in client.watch(pinned.run_id):
                said = update.notice.payload if update.notice is not None else None
                if isinstance(said, CommandRejected):
                    assert "version '1' of agent 'summarize' is not hosted here" in said.reason
                    break
        assert await read_journal(client.log, pinned.run_id) == []
    finally:
        await new.stop()
