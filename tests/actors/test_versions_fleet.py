"""Agent versions across worker processes on one embedded log: a worker hosting the new
version of an agent joins while runs of the old version wait; those complete on the old
worker with the old prompt, new runs use the new version; a run whose version no live worker
hosts is listed as orphaned, left untouched, and its commands are refused with a notice."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from version_fleet import VersionWorker

from wakeline.client import Client
from wakeline.replay import read_journal
from wakeline.runtime import ensure_topics
from wakeline.schemas.commands import CommandRejected
from wakeline.schemas.events import Event, GateOpened, RunCompleted, RunStarted
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.waits import wait_for_event, wait_until_ended
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.partitioner import partition_for

PARTITIONS = 4
ALL = set(range(PARTITIONS))


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[tuple[Path, Client, FakeLLMServer]]:
    data = tmp_path / "data"
    log = await EmbeddedLog.open(data)
    await ensure_topics(log, partitions=PARTITIONS)
    client = Client(log, views_dir=tmp_path / "views")
    with FakeLLMServer() as server:
        try:
            yield data, client, server
        finally:
            await client.aclose()
            await log.close()


def run_id_on(partitions: set[int]) -> str:
    while True:
        run_id = uuid.uuid4().hex
        if partition_for(run_id.encode(), PARTITIONS) in partitions:
            return run_id


async def at_gate(client: Client, run_id: str, gate: str) -> Event:
    def named(event: Event) -> bool:
        return isinstance(event.payload, GateOpened) and event.payload.name == gate

    return await wait_for_event(client, run_id, GateOpened, where=named)


async def finish(client: Client, run_id: str) -> list[Event]:
    """Approve both gates of a waiting ``summarize`` run; its events once it completed."""
    await client.approve(run_id, "start")
    await at_gate(client, run_id, "finish")
    await client.approve(run_id, "finish")
    assert isinstance((await wait_until_ended(client, run_id)).payload, RunCompleted)
    return [e async for e in client.events(run_id)]


def asked(server: FakeLLMServer, topic: str) -> list[tuple[str, str]]:
    """(worker tag, prompt) of every model request about ``topic``."""
    out = []
    for request in server.requests():
        prompt = str(request.body["messages"][-1]["content"])
        if topic in prompt:
            out.append((request.path.split("/")[1], prompt))
    return out


async def cli_process(data: Path, *args: str) -> tuple[int, str]:
    """``wakeline --data DATA ARGS...`` as a user runs it: its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "wakeline.cli", "--data", str(data), *args),
        env={**os.environ, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


def version_of(events: list[Event]) -> str:
    started = events[0].payload
    assert isinstance(started, RunStarted)
    return started.version


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

        fresh = await client.start_run("summarize", "moss", run_id=run_id_on(ALL - pinned))
        events = await finish(client, fresh.run_id)
        assert version_of(events) == "2"
        assert asked(server, "moss") == [("new", "Summarize moss in five words.")]
        assert {e.writer for e in events} == {new.worker_id}

        for run_id, topic in zip(waiting, ("kelp", "otters"), strict=True):
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
    old = await VersionWorker.spawn(data, server, "v1()", "old")
    try:
        await old.owns(ALL)
        run_id = (await client.start_run("summarize", "kelp")).run_id
        await at_gate(client, run_id, "start")
    finally:
        await old.stop()
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
    finally:
        await new.stop()
