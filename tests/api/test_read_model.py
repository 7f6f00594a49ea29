"""One read model: the client and the HTTP API return the same rows of a run (the API's bodies
are the JSON of the row types the client returns)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from wakeline import App
from wakeline.api import KeyRing, create_app
from wakeline.client import Client
from wakeline.ledger import Ledger
from wakeline.projections.costs import DIMENSIONS
from wakeline.projections.rows import (
    AuditEntry,
    BudgetRow,
    CostRow,
    RunRow,
    StepRow,
    dump,
    load,
)
from wakeline.projections.views import Views
from wakeline.providers.mock import MockModel
from wakeline.testing.harness import local_runtime, wait_status
from wakeline.topics.specs import DEFAULT_TOPICS

SECRET = "viewer-secret-0001-aaaaaaaaaaaaaaaaaaaa"


def make_app() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())

    @app.tool
    def lookup(term: str) -> dict[str, str]:
        return {"term": term}

    @app.agent
    async def buy(ctx: Any, item: str) -> str:
        found = await ctx.tool(lookup, term=item)
        decision = await ctx.approval("pay", {"item": found["term"]})
        return str((await ctx.llm(f"bought {item}: {decision.approved}")).text)

    return app


async def api_json(http: httpx.AsyncClient, path: str) -> Any:
    response = await http.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def settled(api: FastAPI, run_id: str) -> None:
    """Until the API's views show the run completed and its tenant's budget settled."""

    def done(views: Views) -> bool:
        run = views.queries.get_run(run_id)
        budgets = views.budgets()
        return run is not None and run.status == "completed" and budgets[0].settles == 1

    await api.state.api.projector.wait_until(done, timeout_s=20)


@asynccontextmanager
async def api_and_client(
    tmp_path: Path,
) -> AsyncIterator[tuple[httpx.AsyncClient, Client, FastAPI]]:
    """A worker, the HTTP API over its log and a client with views of its own."""
    async with local_runtime(make_app(), tmp_path / "data") as rt:
        await Ledger(rt.log, DEFAULT_TOPICS.ledger, writer="t").set_limit(
            "tenant:acme", Decimal("5"), "ops"
        )
        api = create_app(
            rt.log,
            state_dir=tmp_path / "api",
            keys=KeyRing.from_specs([f"ann:viewer:{SECRET}"]),
            poll_s=0.05,
        )
        async with (
            api.router.lifespan_context(api),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=api),
                base_url="http://api",
                headers={"Authorization": f"Bearer {SECRET}"},
            ) as http,
            Client(rt.log, views_dir=tmp_path / "views") as client,
        ):
            yield http, client, api


async def test_the_client_and_the_api_return_the_same_rows(tmp_path: Path) -> None:
    async with api_and_client(tmp_path) as (http, client, api):
        run_id = (await client.start_run("buy", "tea", tenant="acme")).run_id
        suspended = await wait_status(client, run_id, "suspended")
        detail = await api_json(http, f"/v1/runs/{run_id}")
        assert [g["gate"] for g in detail.pop("pending_gates")] == ["pay"]
        assert load(RunRow, detail) == suspended and dump(suspended) == detail

        await client.approve(run_id, "pay")
        row = await wait_status(client, run_id, "completed")
        await settled(api, run_id)
        assert isinstance(row, RunRow) and row.tokens.input > 0
        detail = await api_json(http, f"/v1/runs/{run_id}")
        assert detail.pop("pending_gates") == []
        assert dump(row) == detail and load(RunRow, detail) == row
        page = await client.list(tenant="acme")
        runs = (await api_json(http, "/v1/runs?tenant=acme&fields=input,output"))["runs"]
        summaries = (await api_json(http, "/v1/runs?tenant=acme"))["runs"]
        assert summaries == [{**r, "input": None, "output": None} for r in runs]
        assert runs == [dump(r) for r in page.items] and page.items == (row,)

        await assert_same_steps(http, client, run_id)
        await assert_same_costs_and_budgets(http, client)
        trail = (await client.views()).audit_trail(run_id)
        assert all(isinstance(e, AuditEntry) for e in trail) and len(trail) == row.last_seq + 1
        audit = await api_json(http, f"/v1/runs/{run_id}/audit")
        assert audit["entries"] == [dump(e) for e in trail]
        assert audit["verification"] == {"ok": True, "events": len(trail), "problems": []}


async def assert_same_steps(http: httpx.AsyncClient, client: Client, run_id: str) -> None:
    steps = await client.steps(run_id)
    assert [(s.kind, s.status) for s in steps] == [
        ("tool", "completed"),
        ("gate", "approved"),
        ("model", "completed"),
    ]
    body = await api_json(http, f"/v1/runs/{run_id}/steps")
    assert body["steps"] == [dump(s) for s in steps]
    assert [load(StepRow, s) for s in body["steps"]] == steps
    assert "timeout_ms" in body["steps"][1] and "timeout_ms" not in body["steps"][0]
    assert await api_json(http, f"/v1/runs/{run_id}/steps/{steps[2].seq}") == dump(steps[2])


async def assert_same_costs_and_budgets(http: httpx.AsyncClient, client: Client) -> None:
    for dimension in DIMENSIONS:
        rows = await client.costs(dimension)
        assert rows and all(isinstance(r, CostRow) for r in rows)
        body = await api_json(http, f"/v1/costs/{dimension}")
        assert body["rows"] == [dump(r) for r in rows]
    [budget] = await client.budgets()
    assert isinstance(budget, BudgetRow) and (budget.scope, budget.name) == ("tenant", "acme")
    assert (await api_json(http, "/v1/budgets"))["budgets"] == [dump(budget)]
    assert await api_json(http, "/v1/budgets/tenant/acme") == dump(budget)
