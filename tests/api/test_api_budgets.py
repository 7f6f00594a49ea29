"""Setting shared budgets over the API (``PUT /v1/budgets/{scope}/{name}``), as ``wakeline
budget set`` does: operator only, recorded with who set it."""

from __future__ import annotations

from test_api import (  # noqa: F401 -- env is a fixture
    OPERATOR,
    VIEWER,
    Env,
    budget_row,
    end_offsets,
    env,
)


async def test_an_operator_sets_and_shows_a_shared_budget(env: Env) -> None:  # noqa: F811
    http = env.http
    url = "/v1/budgets/agent/shop"
    before = await end_offsets(env.log, env.topics.ledger)
    assert (await http.put(url, json={"usd": "3.5"})).status_code == 401
    r = await http.put(url, json={"usd": "3.5"}, headers=VIEWER)
    assert r.status_code == 403 and "needs operator" in r.json()["detail"]
    for bad in ({"usd": "-1"}, {"usd": "lots"}, {"limit": 1}):
        assert (await http.put(url, json=bad, headers=OPERATOR)).status_code == 422, bad
    assert await end_offsets(env.log, env.topics.ledger) == before  # nothing written

    r = await http.put(url, json={"usd": "3.5"}, headers=OPERATOR)
    assert r.status_code == 202 and r.json() == {"key": "agent:shop", "usd": "3.5", "by": "ops"}
    row = await budget_row(http, "agent/shop", lambda row: row["limit"] is not None)
    assert row["key"] == "agent:shop" and row["limit_by"] == "ops"
    assert row["limit"] in ("3.5", "3.50")

    r = await http.put("/v1/budgets/tenant/acme", json={"usd": None}, headers=OPERATOR)
    assert r.status_code == 202 and r.json()["usd"] is None
    row = await budget_row(http, "tenant/acme")
    assert row["limit"] is None and row["limit_by"] == "ops"
