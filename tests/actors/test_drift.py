"""Changed code meets a recorded run: the worker marks it drifted and leaves its journal alone;
the original code resumes it later."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from wakeline import App, RunError
from wakeline.client import Client
from wakeline.projections.views import Views
from wakeline.providers.mock import MockModel
from wakeline.replay import read_journal
from wakeline.runtime import ensure_topics
from wakeline.testing.harness import worker_running
from wakeline.topics.embedded.log import EmbeddedLog


def make_app(prompt: str) -> App:
    app = App()
    app.provider("mock", MockModel())

    @app.agent
    async def two_step(ctx: Any, topic: str) -> list[str]:
        first = await ctx.llm(f"{prompt} {topic}")
        await ctx.sleep(0.5)
        second = await ctx.llm(f"more on {first.text}")
        return [first.text, second.text]

    return app


async def test_drifted_run_is_marked_and_resumes_with_matching_code(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path)
    await ensure_topics(log, partitions=1)
    client = Client(log)
    try:
        async with worker_running(make_app("about"), log, tmp_path / "w1"):
            handle = await client.start_run("two_step", "moss", run_id="run-drift")
            async for event in client.events("run-drift"):
                if event.type == "TimerScheduled":
                    break
        before = await read_journal(log, "run-drift")

        async with worker_running(make_app("tell me about"), log, tmp_path / "w2"):
            with pytest.raises(RunError, match=r"drifted: run run-drift: nondeterminism at seq 1"):
                await asyncio.wait_for(client.result("run-drift"), 20)
        assert await read_journal(log, "run-drift") == before  # the journal is untouched

        views = Views(log, tmp_path / "views")
        await views.refresh()
        row = views.queries.get_run("run-drift")
        assert row is not None and row.status == "drifted"
        views.close()

        async with worker_running(make_app("about"), log, tmp_path / "w3"):
            output = await asyncio.wait_for(client.result(handle.run_id), 20)
        assert output == [
            "mock reply to: about moss",
            "mock reply to: more on mock reply to: about moss",
        ]
        views = Views(log, tmp_path / "views")
        await views.refresh()
        row = views.queries.get_run("run-drift")
        assert row is not None and row.status == "completed"
        views.close()
    finally:
        await log.close()
