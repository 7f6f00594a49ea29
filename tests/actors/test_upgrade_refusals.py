"""What the owner of a run refuses an ``UpgradeRun`` for, with a ``CommandRejected`` notice
and nothing appended: a run with a model call in flight, an ended run, no version to move to;
and a run whose actor is in memory waiting only on a timer or a gate's timeout, which it
upgrades (the actor is stopped, ``RunUpgraded`` journaled, the run resumed as the new
version with its timers armed again)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from wakeline import App, Context
from wakeline.client import Client
from wakeline.providers.mock import MockModel
from wakeline.replay import read_journal
from wakeline.schemas.commands import CommandRejected, RunResumed
from wakeline.schemas.events import (
    GateOpened,
    ModelCallRequested,
    RunUpgraded,
    TimerScheduled,
)
from wakeline.testing.harness import local_runtime
from wakeline.testing.waits import wait_for_event, wait_until_ended
from wakeline.topics.partitioner import partition_for


def make_app() -> App:
    app = App()
    app.provider("mock", MockModel(latency_s=3600))  # a model call stays in flight
    for version in ("1", "2"):
        app.agent(_napper(version), name="napper", version=version)
    return app


def _napper(version: str) -> Callable[[Context, str], Awaitable[str]]:
    async def napper(ctx: Context, mode: str) -> str:
        if mode == "sleep":
            await ctx.sleep(3600)
        elif mode == "gate":  # a gate with a timeout: a timer is in flight while it waits
            await ctx.approval("go", timeout=3600)
        elif mode == "call":
            await ctx.llm("hello")
        return f"rested on version {version}"

    return napper


async def refused(client: Client, run_id: str, command_id: str, from_offset: int = 0) -> str:
    async for update in client.watch(run_id, from_offset=from_offset):
        said = update.notice.payload if update.notice is not None else None
        if isinstance(said, CommandRejected) and said.command_id == command_id:
            return said.reason
    raise AssertionError("no refusal")


async def resumed(client: Client, run_id: str) -> str:
    """The reason of the run's first ``RunResumed`` notice."""
    async for update in client.watch(run_id):
        said = update.notice.payload if update.notice is not None else None
        if isinstance(said, RunResumed):
            return said.reason
    raise AssertionError("not resumed")


async def test_the_owner_refuses_upgrades_it_cannot_make(tmp_path: Path) -> None:
    async with local_runtime(make_app(), tmp_path) as rt:
        client = rt.client
        calling = (await client.start_run("napper", "call", version="1")).run_id
        call = await wait_for_event(client, calling, ModelCallRequested)
        command = await client.upgrade_run(calling, "2", call.seq)
        reason = await refused(client, calling, command)
        assert "has a model, tool or step call in flight" in reason
        assert len(await read_journal(client.log, calling)) == call.seq + 1

        no_version = await client.upgrade_run(calling, "", call.seq)
        assert "needs the version" in await refused(client, calling, no_version)

        done = (await client.start_run("napper", "quick", version="1")).run_id
        ended = await wait_until_ended(client, done)
        partition = partition_for(done.encode(), 4)  # local_runtime's 4 partitions
        after = await client.log.end_offset(client.topics.events, partition)  # past its end
        command = await client.upgrade_run(done, "2", ended.seq)
        assert "is not open" in await refused(client, done, command, after)


async def test_a_run_waiting_on_a_timer_is_upgraded_and_its_timer_armed_again(
    tmp_path: Path,
) -> None:
    async with local_runtime(make_app(), tmp_path) as rt:
        client = rt.client
        sleeping = (await client.start_run("napper", "sleep", version="1")).run_id
        timer = await wait_for_event(client, sleeping, TimerScheduled)
        await client.upgrade_run(sleeping, "2", timer.seq)
        moved = await wait_for_event(client, sleeping, RunUpgraded)
        assert moved.seq == timer.seq + 1
        assert "upgraded to version '2'" in await resumed(client, sleeping)
        assert sleeping in rt.worker.running_runs  # its actor again: the timer is armed

        gated = (await client.start_run("napper", "gate", version="1")).run_id
        gate = await wait_for_event(client, gated, GateOpened)
        await client.upgrade_run(gated, "2", gate.seq)
        await wait_for_event(client, gated, RunUpgraded)
        await client.approve(gated, "go")
        assert await client.result(gated) == "rested on version 2"
