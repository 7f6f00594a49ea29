"""The event-driven waits of ``wakeline.testing``: they return on the event, and fail with a
message naming the run and what was awaited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wakeline import App
from wakeline.schemas.events import GateOpened, RunCompleted, TimerScheduled, ToolCallRequested
from wakeline.testing import local_runtime, wait_for_event, wait_until_ended


def make_app() -> App:
    app = App()

    @app.agent
    async def gated(ctx: Any, n: int) -> int:
        await ctx.approval("go", {"n": n})
        return n

    @app.agent
    async def napper(ctx: Any, seconds: float) -> str:
        await ctx.sleep(seconds)
        return "rested"

    return app


async def test_waits_follow_a_run_and_its_unload(tmp_path: Path) -> None:
    async with local_runtime(make_app(), tmp_path) as rt:
        handle = await rt.client.start_run("gated", 7)
        opened = await wait_for_event(rt.client, handle.run_id, GateOpened)
        assert isinstance(opened.payload, GateOpened) and opened.payload.name == "go"
        await rt.wait_unloaded(handle.run_id)  # only a person can move it on
        assert handle.run_id not in rt.worker.running_runs
        await rt.client.approve(handle.run_id, "go")
        ended = await wait_until_ended(rt.client, handle.run_id)
        assert isinstance(ended.payload, RunCompleted) and ended.payload.output == "7"
        assert rt.unloads is not None and rt.unloads.count(handle.run_id) == 1

        with pytest.raises(AssertionError, match=rf"run {handle.run_id} ended with no "):
            await wait_for_event(rt.client, handle.run_id, ToolCallRequested)


async def test_waits_fail_naming_the_run_and_what_was_awaited(tmp_path: Path) -> None:
    async with local_runtime(make_app(), tmp_path) as rt:
        handle = await rt.client.start_run("napper", 3600)
        await wait_for_event(rt.client, handle.run_id, "TimerScheduled")
        with pytest.raises(AssertionError, match=rf"run {handle.run_id}: no terminal event"):
            await wait_until_ended(rt.client, handle.run_id, timeout_s=0.3)
        with pytest.raises(AssertionError, match=rf"run {handle.run_id}: worker .* 0 time"):
            await rt.wait_unloaded(handle.run_id, timeout_s=0.3)  # a timer is no person
        timer = await wait_for_event(
            rt.client, handle.run_id, TimerScheduled, where=lambda e: e.seq > 0
        )
        assert timer.seq > 0
