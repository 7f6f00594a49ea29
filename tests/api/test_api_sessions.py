"""Sessions over HTTP: ``POST /v1/runs`` with ``session`` starts the session's next turn (409
while the last one has not ended), ``GET /v1/sessions/{id}`` lists the turns, ``POST
/v1/sessions/{id}/fork`` starts a forked session at a turn; a viewer may read, not start."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api import KEY_SPECS, LENIENT, OPERATOR, VIEWER, lifespan, observe_folds, run_row

from wakeline import App, Context
from wakeline.api import KeyRing, create_app
from wakeline.providers.mock import MockModel
from wakeline.testing.harness import local_runtime


def make_app() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())

    @app.agent
    async def talk(ctx: Context, text: str) -> str:
        reply = await ctx.llm([*ctx.session.messages(), {"role": "user", "content": text}])
        return f"{len(ctx.session.history)} earlier: {reply.text}"

    @app.agent
    async def waiter(ctx: Context, text: str) -> str:
        await ctx.approval("go")
        return text

    return app


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with local_runtime(make_app(), tmp_path / "data") as rt:
        api = create_app(
            rt.log,
            state_dir=tmp_path / "api-state",
            keys=KeyRing.from_specs(KEY_SPECS),
            app=make_app(),
            limiter=LENIENT,
            unknown_run_grace_s=2.0,
            poll_s=0.05,
        )
        observe_folds(api)
        async with lifespan(api):
            transport = httpx.ASGITransport(app=api)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield client


async def turn(http: httpx.AsyncClient, text: str, **extra: Any) -> httpx.Response:
    body = {"agent": "talk", "input": text, "session": "web-1", **extra}
    return await http.post("/v1/runs", json=body, headers=OPERATOR)


async def test_turns_forks_and_their_refusals_over_http(http: httpx.AsyncClient) -> None:
    for k, text in enumerate(["hi", "again"]):
        r = await turn(http, text)
        assert r.status_code == 202 and r.json()["run_id"] == f"web-1:{k}", r.text
        await run_row(http, f"web-1:{k}", status="completed")
    r = await http.get("/v1/sessions/web-1", headers=VIEWER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_turn"] == 2 and body["forked_from"] is None
    assert [(t["turn"], t["input"], t["status"]) for t in body["turns"]] == [
        (0, "hi", "completed"),
        (1, "again", "completed"),
    ]
    assert body["turns"][1]["output"].startswith("1 earlier: ")
    assert (await http.get("/v1/sessions/nope", headers=VIEWER)).status_code == 404
    assert (await turn(http, "x", run_id="other")).status_code == 422
    denied = await http.post("/v1/runs", json={"agent": "talk", "session": "v"}, headers=VIEWER)
    assert denied.status_code == 403

    fork = {"at_turn": 1, "session": "web-2", "input": "instead"}
    r = await http.post("/v1/sessions/web-1/fork", json=fork, headers=OPERATOR)
    assert r.status_code == 202 and r.json()["run_id"] == "web-2:0", r.text
    row = await run_row(http, "web-2:0", status="completed")
    assert row["output"] == json.dumps("1 earlier: mock reply to: instead")
    r = await http.get("/v1/sessions/web-2", headers=VIEWER)
    assert [t["run_id"] for t in r.json()["turns"]] == ["web-1:0", "web-2:0"]
    assert r.json()["forked_from"] == "web-1" and r.json()["fork_turn"] == 1
    r = await http.post("/v1/sessions/web-1/fork", json={"at_turn": 5}, headers=OPERATOR)
    assert r.status_code == 422 and "fork it at turn 1 to 2" in r.json()["detail"]

    body = {"agent": "waiter", "input": "w", "session": "web-3"}
    assert (await http.post("/v1/runs", json=body, headers=OPERATOR)).status_code == 202
    await run_row(http, "web-3:0", status="suspended")
    r = await http.post("/v1/runs", json=body, headers=OPERATOR)
    assert r.status_code == 409 and "has not ended" in r.json()["detail"], r.text
