"""The API's governance routes end to end (embedded log, a real worker, the ASGI app): gates
(and policy suspensions), budget raises, in-doubt resolutions, the audit trail; roles on each;
streamed model calls as SSE ``delta`` messages."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from slow_stream import SlowStream
from test_api import (
    APPROVER,
    BACKENDS,
    KEY_SPECS,
    LENIENT,
    OPERATOR,
    VIEWER,
    Env,
    Message,
    end_offsets,
    eventually,
    journal,
    lifespan,
    observe_folds,
    read_sse,
    run_row,
    runtime,
    start,
)

from wakeline import App
from wakeline.api import KeyRing, create_app
from wakeline.api.serve import serving
from wakeline.core.governance import CallInfo, Deny
from wakeline.providers.mock import MockModel
from wakeline.schemas.events import Budget
from wakeline.topics.partitioner import partition_for
from wakeline.topics.specs import DEFAULT_TOPICS


def make_app() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())
    app.provider("slow", SlowStream(0.1))

    @app.policy
    def no_o1(call: CallInfo) -> Deny | None:
        if call.kind == "model" and call.target == "o1":
            return Deny("o1 needs a human's approval", suspend=True)
        return None

    @app.tool(idempotent=False)
    async def charge(amount: int) -> str:
        await asyncio.Event().wait()  # never returns: the worker stops meanwhile
        return "never"

    @app.agent
    async def pay(ctx: Any, amount: int) -> dict[str, Any]:
        decision = await ctx.approval("pay", {"amount": amount})
        return {"approved": decision.approved, "by": decision.by, "reason": decision.reason}

    @app.agent
    async def ask(ctx: Any, model: str) -> str:
        return str((await ctx.llm("hello", model=model)).text)

    @app.agent(budget=Budget(model_calls=1))
    async def thrifty(ctx: Any, calls: int) -> int:
        for i in range(calls):
            await ctx.llm(f"question {i}")
        return calls

    @app.agent
    async def charger(ctx: Any, amount: int) -> str:
        return str(await ctx.tool("charge", amount=amount))

    @app.agent
    async def talk(ctx: Any, prompt: str) -> str:
        await ctx.approval("go")
        return str((await ctx.llm(prompt, provider="slow", model="slow-1", stream=True)).text)

    return app


@asynccontextmanager
async def api_env(data: Path, request: pytest.FixtureRequest | None = None) -> AsyncIterator[Env]:
    async with runtime(request, make_app(), data / "log") as rt:
        api = create_app(
            rt.log,
            state_dir=data / "api",
            keys=KeyRing.from_specs(KEY_SPECS),
            app=make_app(),
            topics=rt.topics,
            limiter=LENIENT,
            unknown_run_grace_s=0.5,
            poll_s=0.05,
            heartbeat_s=1.0,
        )
        observe_folds(api)
        async with lifespan(api):
            transport = httpx.ASGITransport(app=api)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://api", timeout=30
            ) as http:
                yield Env(rt, api, http)


@pytest.fixture
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    async with api_env(tmp_path, request) as e:
        yield e


async def assert_guarded(
    env: Env, url: str, body: Any, needs: str, too_small: dict[str, str]
) -> None:
    """401 without a key or with a bad one, 403 below ``needs``; nothing is published."""
    before = await end_offsets(env.log, env.topics.commands)
    http = env.http
    r = await http.post(url, json=body)
    assert r.status_code == 401 and r.json()["detail"] == "an API key is required", r.text
    r = await http.post(url, json=body, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = await http.post(url, json=body, headers=too_small)
    assert r.status_code == 403 and f"needs {needs}" in r.json()["detail"], r.text
    assert await end_offsets(env.log, env.topics.commands) == before


async def detail(http: httpx.AsyncClient, run_id: str) -> Any:
    r = await http.get(f"/v1/runs/{run_id}", headers=VIEWER)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------------------- gates


@BACKENDS
async def test_approve_and_reject_gates(env: Env) -> None:
    http = env.http
    run_id = await start(http, "pay", 40)
    row = await run_row(http, run_id, status="suspended")
    (gate,) = row["pending_gates"]
    assert gate["gate"] == "pay" and gate["kind"] == "gate" and gate["seq"] == 1
    assert json.loads(gate["payload"]) == {"amount": 40} and gate["timeout_ms"] is None
    url = f"/v1/runs/{run_id}/gates/pay/approve"
    for action in ("approve", "reject"):
        await assert_guarded(env, f"/v1/runs/{run_id}/gates/pay/{action}", {}, "approver", OPERATOR)
        await assert_guarded(env, f"/v1/runs/{run_id}/gates/pay/{action}", {}, "approver", VIEWER)

    r = await http.post("/v1/runs/nope/gates/pay/approve", json={}, headers=APPROVER)
    assert r.status_code == 404 and r.json()["detail"] == "unknown run 'nope'"
    r = await http.post(f"/v1/runs/{run_id}/gates/ship/approve", json={}, headers=APPROVER)
    assert r.status_code == 409 and r.json()["detail"] == f"run '{run_id}' has no open gate 'ship'"
    r = await http.post(url, json={"reason": "x", "extra": 1}, headers=APPROVER)
    assert r.status_code == 422

    r = await http.post(url, json={"reason": "within budget"}, headers=APPROVER)
    assert r.status_code == 202, r.text
    assert r.json() == {"run_id": run_id, "command": "approve", "issuer": "boss"}
    row = await run_row(http, run_id, status="completed")
    assert json.loads(row["output"]) == {"approved": True, "by": "boss", "reason": "within budget"}
    assert row["pending_gates"] == []
    r = await http.post(url, json={}, headers=APPROVER)
    assert r.status_code == 409 and "already ended (completed)" in r.json()["detail"]
    steps = (await http.get(f"/v1/runs/{run_id}/steps", headers=VIEWER)).json()["steps"]
    assert [(s["kind"], s["status"]) for s in steps] == [("gate", "approved")]

    # reject, with no body at all, by the step's seq
    other = await start(http, "pay", 900)
    await run_row(http, other, status="suspended")
    r = await http.post(f"/v1/runs/{other}/gates/1/reject", headers=APPROVER)
    assert r.status_code == 202 and r.json()["command"] == "reject"
    row = await run_row(http, other, status="completed")
    assert json.loads(row["output"]) == {"approved": False, "by": "boss", "reason": ""}


async def test_a_policy_suspension_is_a_pending_gate(env: Env) -> None:
    http = env.http
    run_id = await start(http, "ask", "o1")
    row = await run_row(http, run_id, status="suspended")
    (gate,) = row["pending_gates"]
    assert gate["kind"] == "policy" and gate["gate"] == "no_o1" and gate["target"] == "o1"
    assert gate["reason"] == "o1 needs a human's approval" and gate["payload"] is None
    r = await http.post(f"/v1/runs/{run_id}/gates/no_o1/approve", headers=APPROVER)
    assert r.status_code == 202, r.text
    row = await run_row(http, run_id, status="completed")
    assert row["model_calls"] == 1 and row["pending_gates"] == []


# ---------------------------------------------------------------------------- budgets


async def test_raise_a_budget(env: Env) -> None:
    http = env.http
    run_id = await start(http, "thrifty", 3)
    await run_row(http, run_id, status="suspended")
    url = f"/v1/runs/{run_id}/budget"
    await assert_guarded(env, url, {"metric": "model_calls", "limit": 5}, "operator", VIEWER)
    before = await end_offsets(env.log, env.topics.commands)
    bad = [
        ({"metric": "euros", "limit": 5}, "unknown budget metric 'euros'"),
        ({"metric": "usd", "limit": "lots"}, "limit"),
        ({"metric": "usd", "limit": -1}, "must be a finite number >= 0"),
        ({"metric": "usd", "limit": "NaN"}, "limit"),
        ({"metric": "usd"}, "limit"),
    ]
    for body, message in bad:
        r = await http.post(url, json=body, headers=OPERATOR)
        assert r.status_code == 422 and message in r.json()["detail"], (body, r.text)
    r = await http.post(url, json={"metric": "tokens", "limit": 10}, headers=OPERATOR)
    assert r.status_code == 409
    assert r.json()["detail"] == f"run '{run_id}' is not waiting on its tokens budget"
    r = await http.post(
        "/v1/runs/nope/budget", json={"metric": "usd", "limit": 1}, headers=OPERATOR
    )
    assert r.status_code == 404
    assert await end_offsets(env.log, env.topics.commands) == before

    r = await http.post(url, json={"metric": "model_calls", "limit": "5"}, headers=OPERATOR)
    assert r.status_code == 202, r.text
    assert r.json() == {"run_id": run_id, "command": "raise_budget", "issuer": "ops"}
    row = await run_row(http, run_id, status="completed")
    assert row["output"] == "3" and row["model_calls"] == 3
    steps = (await http.get(f"/v1/runs/{run_id}/steps", headers=VIEWER)).json()["steps"]
    (raised,) = [s for s in steps if s["kind"] == "budget"]
    assert raised["status"] == "raised" and json.loads(raised["response"]) == {
        "limit": "5",
        "by": "ops",
    }


# ---------------------------------------------------------------------------- in doubt


async def test_resolve_an_in_doubt_call(tmp_path: Path) -> None:
    async with api_env(tmp_path) as first:
        run_id = await start(first.http, "charger", 25)
        row = await run_row(first.http, run_id)

        async def some_steps() -> Any:
            steps = (await first.http.get(f"/v1/runs/{run_id}/steps", headers=VIEWER)).json()
            return steps if steps["steps"] else None

        # the charge was requested (and hangs): then its worker stops
        steps = await eventually(some_steps)
        (charge,) = steps["steps"]
        assert charge["kind"] == "tool" and charge["status"] == "open"
    async with api_env(tmp_path) as env:  # a new worker finds the call in doubt
        http = env.http
        row = await run_row(http, run_id, status="suspended")
        seq = charge["seq"]
        step = (await http.get(f"/v1/runs/{run_id}/steps/{seq}", headers=VIEWER)).json()
        assert step["status"] == "in_doubt"
        url = f"/v1/runs/{run_id}/in-doubt/{seq}"
        body = {"resolution": "SUPPLY", "result": "charged 25 (confirmed)"}
        await assert_guarded(env, url, body, "approver", OPERATOR)
        r = await http.post(url, json={"resolution": "MAYBE"}, headers=APPROVER)
        assert r.status_code == 422
        r = await http.post(f"/v1/runs/{run_id}/in-doubt/0", json=body, headers=APPROVER)
        assert r.status_code == 409
        assert r.json()["detail"] == f"run '{run_id}' has no in-doubt call at seq 0"
        r = await http.post(url, json=body, headers=APPROVER)
        assert r.status_code == 202, r.text
        assert r.json() == {"run_id": run_id, "command": "resolve_in_doubt", "issuer": "boss"}
        row = await run_row(http, run_id, status="completed")
        assert json.loads(row["output"]) == "charged 25 (confirmed)"
        step = (await http.get(f"/v1/runs/{run_id}/steps/{seq}", headers=VIEWER)).json()
        assert step["resolution"] == {"resolution": "SUPPLY", "by": "boss"}
        r = await http.post(url, json=body, headers=APPROVER)
        assert r.status_code == 409


# ---------------------------------------------------------------------------- audit


async def test_the_audit_trail_and_its_check(env: Env, tmp_path: Path) -> None:
    http = env.http
    run_id = await start(http, "pay", 5)
    await run_row(http, run_id, status="suspended")
    await http.post(f"/v1/runs/{run_id}/gates/pay/approve", json={"reason": "ok"}, headers=APPROVER)
    row = await run_row(http, run_id, status="completed")
    url = f"/v1/runs/{run_id}/audit"
    assert (await http.get(url)).status_code == 401
    assert (await http.get("/v1/runs/nope/audit", headers=VIEWER)).status_code == 404
    audit = (await http.get(url, headers=VIEWER)).json()
    entries = audit["entries"]
    assert [e["seq"] for e in entries] == list(range(row["last_seq"] + 1))
    assert [e["type"] for e in entries] == [
        "RunStarted",
        "GateOpened",
        "GateResolved",
        "RunCompleted",
    ]
    assert [e["by"] for e in entries] == [None, None, "boss", None]
    assert audit["verification"] == {"ok": True, "events": 4, "problems": []}

    tamper(tmp_path / "log", run_id, index=2, old=b"boss", new=b"b0ss")
    audit = (await http.get(url, headers=VIEWER)).json()
    assert audit["verification"]["ok"] is False
    (problem,) = audit["verification"]["problems"]
    assert problem["seq"] == 2 and problem["type"] == "GateResolved"
    # the log's own chain names it: the next event carries another hash of the changed record
    assert "changed in the log: seq 3 carries another hash of it" in problem["problem"]


def tamper(data: Path, run_id: str, *, index: int, old: bytes, new: bytes) -> None:
    """Edit the ``index``-th event of the run in the embedded log's database."""
    db = sqlite3.connect(data / "log.sqlite3")
    partition = partition_for(run_id.encode(), 4)
    (pid,) = db.execute(
        "SELECT id FROM partitions WHERE topic = ? AND partition = ?",
        (DEFAULT_TOPICS.events, partition),
    ).fetchone()
    rows = db.execute(
        "SELECT id, value FROM records WHERE id >= ? AND id < ? AND key = ? ORDER BY id",
        (pid << 40, (pid + 1) << 40, run_id.encode()),
    ).fetchall()
    row_id, value = rows[index]
    assert old in value
    db.execute("UPDATE records SET value = ? WHERE id = ?", (value.replace(old, new), row_id))
    db.commit()
    db.close()


# ---------------------------------------------------------------------------- streaming


async def test_streamed_text_arrives_as_delta_messages(env: Env) -> None:
    run_id = await start(env.http, "talk", "otters")
    await run_row(env.http, run_id, status="suspended")  # streams once approved
    async with serving(env.api) as base, httpx.AsyncClient(base_url=base, timeout=30) as live:
        url = f"/v1/runs/{run_id}/events"
        gate = Joined()
        reading = asyncio.create_task(read_sse(live, url, VIEWER, on_message=gate.saw))
        await gate.wait(reading)
        r = await env.http.post(f"/v1/runs/{run_id}/gates/go/approve", headers=APPROVER)
        assert r.status_code == 202
        messages = await reading
        deltas = [m for m in messages if m.event == "delta"]
        assert deltas and all(m.id is None for m in deltas)  # not in the id sequence
        events = journal(messages)
        assert [m.id for m in events] == list(range(len(events)))
        kinds = [m.data["type"] if m.event == "message" else m.event for m in messages]
        first, last = kinds.index("delta"), len(kinds) - 1 - kinds[::-1].index("delta")
        assert kinds.index("ModelCallRequested") < first
        assert last < kinds.index("ModelCallCompleted")
        completed = next(m for m in events if m.data["type"] == "ModelCallCompleted")
        text = json.loads(completed.data["payload"]["message"])["content"]
        assert "".join(m.data["text"] for m in deltas) == text
        assert [m.data["index"] for m in deltas] == list(range(len(deltas)))
        assert {m.data["seq"] for m in deltas} == {completed.data["payload"]["step"]}

        # after the end: the same journal, no deltas; Last-Event-ID works as before
        again = await read_sse(live, url, VIEWER)
        assert [m.data for m in journal(again)] == [m.data for m in events]
        assert not [m for m in again if m.event == "delta"]
        tail = await read_sse(live, url, {**VIEWER, "Last-Event-ID": "1"})
        assert [m.id for m in journal(tail)] == list(range(2, len(events)))

        # deltas=false: none, even while it streams
        quiet = await start(env.http, "talk", "seals")
        await run_row(env.http, quiet, status="suspended")
        gate = Joined()
        reading = asyncio.create_task(
            read_sse(live, f"/v1/runs/{quiet}/events?deltas=false", VIEWER, on_message=gate.saw)
        )
        await gate.wait(reading)
        await env.http.post(f"/v1/runs/{quiet}/gates/go/approve", headers=APPROVER)
        messages = await reading
        assert not [m for m in messages if m.event == "delta"]
        assert journal(messages)[-1].data["type"] == "RunCompleted"


class Joined:
    """Set once a subscriber got the history up to the open gate (it follows deltas then)."""

    def __init__(self) -> None:
        self.seen: list[Message] = []
        self._opened = asyncio.Event()

    def saw(self, message: Message) -> None:
        self.seen.append(message)
        if message.event == "message" and message.data["type"] == "GateOpened":
            self._opened.set()

    async def wait(self, reading: asyncio.Task[list[Message]], timeout_s: float = 10) -> None:
        opened = asyncio.create_task(self._opened.wait())
        await asyncio.wait(
            {opened, reading}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if not opened.done():
            opened.cancel()
            raise AssertionError(f"the subscriber got no GateOpened: {self.seen}")
