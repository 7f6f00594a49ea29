"""``Client.get`` / ``list`` / ``steps`` / ``costs`` / ``budgets``: queries of views the
client folds from the log on demand (embedded log, a real worker)."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from wakeline import App
from wakeline.client import Client, NoViewsError
from wakeline.ledger import Ledger
from wakeline.projections.rows import Page, RunRow
from wakeline.providers.mock import MockModel
from wakeline.testing.harness import local_runtime, wait_status
from wakeline.topics.specs import DEFAULT_TOPICS


def make_app() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())

    @app.agent
    async def echo(ctx: Any, text: str) -> str:
        return str((await ctx.llm(text)).text)

    @app.agent
    async def chat(ctx: Any, turns: int) -> int:
        for i in range(turns):
            await ctx.llm(f"turn {i}")
        return turns

    @app.agent
    async def pay(ctx: Any, amount: int) -> bool:
        decision = await ctx.approval("pay", {"amount": amount})
        return bool(decision.approved)

    return app


async def test_queries_need_views(tmp_path: Path) -> None:
    async with local_runtime(make_app(), tmp_path / "data") as rt:
        with pytest.raises(NoViewsError, match=r"Client\(log, views_dir="):
            await rt.client.get("x")
        with pytest.raises(NoViewsError):
            await rt.client.list()
        with pytest.raises(NoViewsError):
            await rt.client.costs("agent")
        with pytest.raises(NoViewsError):
            await rt.client.budgets()


async def test_get_list_filters_and_pages(tmp_path: Path) -> None:
    async with (
        local_runtime(make_app(), tmp_path / "data") as rt,
        Client(rt.log, views_dir=tmp_path / "views") as client,
    ):
        before = int(time.time() * 1000)
        ids = []
        for text, tenant in (("a", "acme"), ("b", "acme"), ("c", "zeta")):
            handle = await client.start_run("echo", text, tenant=tenant)
            assert await client.result(handle.run_id) == f"mock reply to: {text}"
            ids.append(handle.run_id)
        gated = (await client.start_run("pay", 40, tenant="acme")).run_id
        row = await wait_status(client, gated, "suspended")
        assert row.agent == "pay" and row.tenant == "acme"

        # get: refreshed on demand
        done = await client.get(ids[0])
        assert done is not None and done.status == "completed"
        assert done.output == '"mock reply to: a"' and done.model_calls == 1
        assert await client.get("no-such-run") is None
        steps = await client.steps(ids[0])
        assert [s.kind for s in steps] == ["model"] and steps[0].status == "completed"

        # filters
        assert ids_of(await client.list(tenant="acme")) == {ids[0], ids[1], gated}
        assert ids_of(await client.list(agent="pay")) == {gated}
        assert ids_of(await client.list(status="suspended")) == {gated}
        assert ids_of(await client.list(status="completed", tenant="zeta")) == {ids[2]}
        assert ids_of(await client.list(since_ms=int(time.time() * 1000) + 60_000)) == set()
        assert ids_of(await client.list(until_ms=before)) == set()
        assert len(ids_of(await client.list(since_ms=before))) == 4

        # pages, newest first
        seen: list[str] = []
        cursor = None
        while True:
            page = await client.list(limit=1, cursor=cursor)
            assert len(page.items) == 1
            seen.append(page.items[0].run_id)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert set(seen) == {*ids, gated} and len(seen) == 4
        started = [(await client.get(i) or RunRow(i)).started_ms or 0 for i in seen]
        assert started == sorted(started, reverse=True)
        with pytest.raises(ValueError, match="invalid cursor"):
            await client.list(cursor="bogus")

        # a decision shows at the next query, without any explicit refresh
        await client.approve(gated, "pay", "ok")
        assert (await wait_status(client, gated, "completed")).output == "true"


async def test_costs_and_shared_budgets(tmp_path: Path) -> None:
    async with (
        local_runtime(make_app(), tmp_path / "data") as rt,
        Client(rt.log, views_dir=tmp_path / "views") as client,
    ):
        assert await client.costs("agent") == [] and await client.budgets() == []
        ledger = Ledger(rt.log, DEFAULT_TOPICS.ledger, writer="test")
        await ledger.set_limit("tenant:acme", Decimal("0.5"), "ops")
        echo = await client.start_run("echo", "hi", tenant="acme")
        chat = await client.start_run("chat", 3)
        assert await client.result(echo.run_id) == "mock reply to: hi"
        assert await client.result(chat.run_id) == 3
        runs = {"echo": await client.get(echo.run_id), "chat": await client.get(chat.run_id)}
        cost = {agent: Decimal((row or RunRow(agent)).cost_usd) for agent, row in runs.items()}
        assert cost["echo"] > 0 and cost["chat"] > 0

        by_agent = {str(row.agent): row for row in await client.costs("agent")}
        assert set(by_agent) == {"echo", "chat"}
        for agent, row in by_agent.items():
            assert Decimal(row.cost_usd) == cost[agent]
            assert row.tokens == (runs[agent] or RunRow(agent)).tokens
        assert (by_agent["echo"].model_calls, by_agent["chat"].model_calls) == (1, 3)
        days = await client.costs("day")
        assert sum(Decimal(row.cost_usd) for row in days) == cost["echo"] + cost["chat"]
        assert sum(row.model_calls for row in days) == 4
        [acme] = await client.costs("tenant", "acme")
        assert Decimal(acme.cost_usd) == cost["echo"]
        chat_days = await client.costs("agent-day", "chat")
        assert {row.agent for row in chat_days} == {"chat"}
        assert sum(Decimal(row.cost_usd) for row in chat_days) == cost["chat"]
        with pytest.raises(ValueError, match="unknown cost dimension 'planet'"):
            await client.costs("planet")

        # the echo run spent against its tenant's budget: reserved, then settled -- before its
        # result was journaled, so the views show it as soon as the run has ended
        [budget] = await client.budgets()
        assert budget.settles == 1
        assert (budget.key, budget.limit, budget.limit_by) == ("tenant:acme", "0.5", "ops")
        assert Decimal(budget.spent) == cost["echo"] and budget.grants == 1
        assert budget.in_flight == 0 and Decimal(budget.reserved) == 0


async def test_two_clients_share_a_views_dir(tmp_path: Path) -> None:
    async with local_runtime(make_app(), tmp_path / "data") as rt:
        handle = await rt.client.start_run("echo", "x")
        await rt.client.result(handle.run_id)
        async with (
            Client(rt.log, views_dir=tmp_path / "views") as one,
            Client(rt.log, views_dir=tmp_path / "views") as two,
        ):
            assert (await one.get(handle.run_id) or RunRow("")).status == "completed"
            assert (await two.get(handle.run_id) or RunRow("")).status == "completed"
        assert sorted(p.name for p in (tmp_path / "views").iterdir()) == ["views-0", "views-1"]
        async with Client(rt.log, views_dir=tmp_path / "views") as again:  # a slot is reused
            assert ids_of(await again.list()) == {handle.run_id}
        assert len(list((tmp_path / "views").iterdir())) == 2


def ids_of(page: Page[RunRow]) -> set[str]:
    return {r.run_id for r in page.items}
