"""What the owner of a run refuses an ``UpgradeRun`` for, with a ``CommandRejected`` notice
and nothing appended: a run with a timer in flight (its actor is in memory), an ended run, no
version to move to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from wakeline import App, Context
from wakeline.client import Client
from wakeline.providers.mock import MockModel
from wakeline.replay import read_journal
from wakeline.schemas.commands import CommandRejected
from wakeline.schemas.events import TimerScheduled
from wakeline.testing.harness import local_runtime
from wakeline.testing.waits import wait_for_event, wait_until_ended
from wakeline.topics.partitioner import partition_for


def make_app() -> App:
    app = App()
    app.provider("mock", MockModel())
    for version in ("1", "2"):
        app.agent(_napper(), name="napper", version=version)
    return app


def _napper() -> Callable[[Context, bool], Awaitable[str]]:
    async def napper(ctx: Context, quick: bool) -> str:
        if not quick:
            await ctx.sleep(3600)
        return "rested"

    return napper


async def refused(client: Client, run_id: str, command_id: str, from_offset: int = 0) -> str:
    async for update in client.watch(run_id, from_offset=from_offset):
        said = update.notice.payload if update.notice is not None else None
        if isinstance(said, CommandRejected) and said.command_id == command_id:
            return said.reason
    raise AssertionError("no refusal")


async def test_the_owner_refuses_upgrades_it_cannot_make(tmp_path: Path) -> None:
    async with local_runtime(make_app(), tmp_path) as rt:
        client = rt.client
        sleeping = (await client.start_run("napper", False, version="1")).run_id
        timer = await wait_for_event(client, sleeping, TimerScheduled)
        command = await client.upgrade_run(sleeping, "2", timer.seq)
        reason = await refused(client, sleeping, command)
        assert "has a call or timer in flight" in reason
        assert len(await read_journal(client.log, sleeping)) == timer.seq + 1

        no_version = await client.upgrade_run(sleeping, "", timer.seq)
        assert "needs the version" in await refused(client, sleeping, no_version)

        done = (await client.start_run("napper", True, version="1")).run_id
        ended = await wait_until_ended(client, done)
        partition = partition_for(done.encode(), 4)  # local_runtime's 4 partitions
        after = await client.log.end_offset(client.topics.events, partition)  # past its end
        command = await client.upgrade_run(done, "2", ended.seq)
        assert "is not open" in await refused(client, done, command, after)
