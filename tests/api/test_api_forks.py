"""``POST /v1/runs/{run_id}/fork`` (operator): a fork of a finished run at its second model
call reuses the first, asks the override model (or sends the override system prompt) from there
and completes; a point that is not a call is a 422 with the reason, an unknown run a 404, a
viewer's request a 403, an oversized prompt a 422.  ``GET /v1/runs/{id}/fork`` says where a
run comes from and ``GET /v1/diff`` names the fork point (viewer)."""

from __future__ import annotations

from test_api import OPERATOR, VIEWER, Env, end_offsets, run_row, start
from test_api import env as env  # the fixture, by name

from wakeline.client import Client
from wakeline.core.history import expand_requests
from wakeline.diffing import MAX_TEXT
from wakeline.forking import MAX_PROMPT_CHARS
from wakeline.schemas.events import ModelCallRequested

JSON_OPERATOR = {**OPERATOR, "Content-Type": "application/json"}


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


async def test_a_fork_with_a_prompt_and_its_diff_over_http(env: Env) -> None:
    http, client = env.http, env.rt.client
    source = await start(http, "napper", {"naps": 2, "seconds": 0})
    await run_row(http, source, status="completed")
    [(first, _), (second, _)] = await requests_of(client, source)

    before = await end_offsets(env.log, env.topics.commands)
    too_long = {"at": second, "prompt": "x" * (MAX_PROMPT_CHARS + 1)}
    r = await http.post(f"/v1/runs/{source}/fork", json=too_long, headers=OPERATOR)
    assert r.status_code == 422 and "prompt" in r.text, r.text
    lone = b'{"at": %d, "prompt": "\\ud800"}' % second
    r = await http.post(f"/v1/runs/{source}/fork", content=lone, headers=JSON_OPERATOR)
    assert r.status_code == 422 and "body.prompt" in r.json()["detail"], r.text
    assert await end_offsets(env.log, env.topics.commands) == before  # nothing published

    body = {"at": second, "prompt": "Answer <b>only</b> in haiku. " + "~" * MAX_TEXT}
    r = await http.post(f"/v1/runs/{source}/fork", json=body, headers=OPERATOR)
    assert r.status_code == 202, r.text
    fork = r.json()["run_id"]
    await run_row(http, fork, status="completed")
    requests = expand_requests([e async for e in client.events(fork)])
    assert [m["role"] for m in requests[first]["messages"]] == ["user"]  # reused as recorded
    assert requests[second]["messages"][0] == {"role": "system", "content": body["prompt"]}

    r = await http.get(f"/v1/runs/{fork}/fork", headers=VIEWER)
    assert r.status_code == 200, r.text
    assert r.json()["fork"] == {
        "source": source,
        "seq": second,
        "model": "",
        "tools": "live",
        "prompt": body["prompt"],
    }
    r = await http.get(f"/v1/runs/{source}/fork", headers=VIEWER)
    assert r.status_code == 200 and r.json() == {"run_id": source, "fork": None}

    assert (await http.get("/v1/diff", params={"a": source, "b": fork})).status_code == 401
    r = await http.get("/v1/diff", params={"a": source, "b": fork}, headers=VIEWER)
    assert r.status_code == 200, r.text
    diff = r.json()
    point = diff["first_divergence"]
    assert point["a"]["seq"] == point["b"]["seq"] == second and point["first"]
    assert point["b"]["system"] == body["prompt"][: MAX_TEXT - 1] + "…"  # cut for the page
    assert point["a"]["system"] == "" and "system" in point["changed"]
    pairs = diff["pairs"]
    assert len(pairs) == diff["total_pairs"] == 5 and diff["next_offset"] is None
    assert [p["first"] for p in pairs].count(True) == 1
    assert pairs[0]["a"]["seq"] == pairs[0]["b"]["seq"] == first and not pairs[0]["diverged"]
    assert pairs[0]["changed"] == []  # the reused step is the source's
    page = {"a": source, "b": fork, "offset": 1, "limit": 2}
    r = await http.get("/v1/diff", params=page, headers=VIEWER)
    assert r.status_code == 200 and r.json()["pairs"] == pairs[1:3], r.text
    assert r.json()["next_offset"] == 3 and r.json()["first_divergence"] == point

    r = await http.get("/v1/diff", params={"a": source, "b": "0" * 32}, headers=VIEWER)
    assert r.status_code == 404 and r.json()["detail"] == f"unknown run {'0' * 32!r}"
    r = await http.get("/v1/runs/" + "0" * 32 + "/fork", headers=VIEWER)
    assert r.status_code == 404
