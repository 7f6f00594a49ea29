"""The Python client on both backends: a subscriber joining mid-run sees every event exactly
once and in order; start, approve, cancel, get and list behave the same on the embedded log
and on a real Kafka broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from backends import backend_params, runtime_for

from wakeline import App
from wakeline.client import Client, RunError
from wakeline.providers.mock import MockModel
from wakeline.schemas.events import Event
from wakeline.testing.harness import LocalRuntime, wait_status


def make_app() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())

    @app.agent
    async def napper(ctx: Any, naps: int) -> list[str]:
        notes = []
        for i in range(naps):
            notes.append(str((await ctx.llm(f"note {i}")).text))
            await ctx.sleep(0.3)
        return notes

    @app.agent
    async def pay(ctx: Any, amount: int) -> bool:
        decision = await ctx.approval("pay", {"amount": amount})
        if decision.approved:
            await ctx.llm(f"receipt for {amount}")
        return bool(decision.approved)

    return app


@pytest.fixture(params=backend_params())
async def rt(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    async with runtime_for(request, make_app(), tmp_path / "data", "client") as runtime:
        yield runtime


@asynccontextmanager
async def views_client(rt: LocalRuntime, path: Path) -> AsyncIterator[Client]:
    async with Client(rt.log, topics=rt.topics, views_dir=path) as client:
        yield client


async def collect(client: Client, run_id: str) -> list[Event]:
    updates = client.subscribe(run_id)
    return [u.event async for u in updates if u.event is not None]


async def test_a_subscriber_joining_mid_run_sees_every_event_once_in_order(
    rt: LocalRuntime,
) -> None:
    client = rt.client
    handle = await client.start_run("napper", 5)
    early = asyncio.create_task(collect(client, handle.run_id))  # from the start
    seen = 0
    async for event in client.events(handle.run_id):
        seen += 1
        if event.type == "TimerScheduled" and seen > 4:
            break  # the run is mid-way: two calls and two naps in
    late = await asyncio.wait_for(collect(client, handle.run_id), 30)  # joins mid-run
    whole = await asyncio.wait_for(early, 30)
    assert [e.seq for e in late] == list(range(len(late)))
    assert late == whole
    assert late[0].type == "RunStarted" and late[-1].type == "RunCompleted"
    assert [e.type for e in late].count("ModelCallCompleted") == 5
    assert await client.result(handle.run_id) == [f"mock reply to: note {i}" for i in range(5)]


async def test_approve_cancel_get_and_list(rt: LocalRuntime, tmp_path: Path) -> None:
    async with views_client(rt, tmp_path / "views") as client:
        approved = (await client.start_run("pay", 40, tenant="acme")).run_id
        cancelled = (await client.start_run("pay", 99, tenant="zeta")).run_id
        for run_id in (approved, cancelled):
            await wait_status(client, run_id, "suspended")
        await client.approve(approved, "pay", reason="within limits")
        await client.cancel(cancelled, reason="duplicate order")
        assert await asyncio.wait_for(client.result(approved), 30) is True
        with pytest.raises(RunError, match="duplicate order"):
            await asyncio.wait_for(client.result(cancelled), 30)

        row = await wait_status(client, approved, "completed")
        assert row.tenant == "acme" and row.model_calls == 1
        await wait_status(client, cancelled, "cancelled")
        acme = await client.list(tenant="acme")
        assert [r.run_id for r in acme.items] == [approved]
        done = await client.list(status="completed")
        assert [r.run_id for r in done.items] == [approved]
