"""``POST /v1/runs/{run_id}/fork`` (operator): a fork of a finished run at its second model
call reuses the first, asks the override model from there and completes; a point that is not
a call is a 422 with the reason, an unknown run a 404, a viewer's request a 403."""

from __future__ import annotations

from test_api import OPERATOR, VIEWER, Env, run_row, start
from test_api import env as env  # the fixture, by name

from wakeline.client import Client
from wakeline.schemas.events import ModelCallRequested


async def requests_of(client: Client, run_id: str) -> list[tuple[int, str]]:
    events = [e async for e in client.events(run_id)]
    return [(e.seq, e.payload.model) for e in events if isinstance(e.payload, ModelCallRequested)]


async def test_a_run_is_forked_over_http(env: Env) -> None:
    http, client = env.http, env.rt.client
    source = await start(http, "napper", {"naps": 2, "seconds": 0})
    await run_row(http, source, status="completed")
    [(first, _), (second, _)] = await requests_of(client, source)

    denied = await http.post(f"/v1/runs/{source}/fork", json={"at": second}, headers=VIEWER)
    assert denied.status_code == 403
    r = await http.post(f"/v1/runs/{source}/fork", json={"at": first + 1}, headers=OPERATOR)
    assert r.status_code == 422 and "not a model or tool call" in r.json()["detail"], r.text
    r = await http.post("/v1/runs/" + "0" * 32 + "/fork", json={"at": 1}, headers=OPERATOR)
    assert r.status_code == 404

    body = {"at": second, "model": "mock-2"}
    r = await http.post(f"/v1/runs/{source}/fork", json=body, headers=OPERATOR)
    assert r.status_code == 202, r.text
    fork = r.json()["run_id"]
    row = await run_row(http, fork, status="completed")
    assert row["agent"] == "napper"
    assert await requests_of(client, fork) == [(first, "mock-1"), (second, "mock-2")]
