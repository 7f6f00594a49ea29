"""The HTTP API end to end: a real embedded log, a real in-process worker, the real ASGI app
(httpx + ASGITransport) and, for the event streams, a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
import pytest
from backends import backend_params, runtime_for
from click.testing import CliRunner
from fastapi import FastAPI
from pydantic import BaseModel

from wakeline import App
from wakeline.api import KeyRing, Role, create_app
from wakeline.api.guard import FailureLimiter
from wakeline.api.serve import REDACTED, redact, serving
from wakeline.cli.serve import register
from wakeline.ledger import Ledger
from wakeline.projections.costs import utc_day
from wakeline.providers.mock import MockModel
from wakeline.schemas.codec import command_codec
from wakeline.testing.harness import LocalRuntime
from wakeline.testing.seams import Calls, observe_calls
from wakeline.testing.waits import wait_for_event, wait_until_ended
from wakeline.topics.port import Log, OutRecord
from wakeline.topics.specs import Topics

T = TypeVar("T")
LENIENT = FailureLimiter(burst=100_000)
"""The tests fail authentications on purpose, many times: no 429 (tested on its own)."""

VIEWER_SECRET = "viewer-secret-0001-aaaaaaaaaaaaaaaaaaaa"
OPERATOR_SECRET = "operator-secret-0002-bbbbbbbbbbbbbbbbbbbb"
APPROVER_SECRET = "approver-secret-0003-cccccccccccccccccccc"
KEY_SPECS = (
    f"ann:viewer:{VIEWER_SECRET}",
    f"ops:operator:{OPERATOR_SECRET}",
    f"boss:approver:{APPROVER_SECRET}",
)
SECRETS = (VIEWER_SECRET, OPERATOR_SECRET, APPROVER_SECRET)
VIEWER = {"Authorization": f"Bearer {VIEWER_SECRET}"}
OPERATOR = {"Authorization": f"Bearer {OPERATOR_SECRET}"}
APPROVER = {"Authorization": f"Bearer {APPROVER_SECRET}"}


class Order(BaseModel):
    item: str
    quantity: int


class Nap(BaseModel):
    naps: int = 3
    seconds: float = 0.3


def make_app() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())

    @app.tool
    def lookup(term: str) -> dict[str, str]:
        return {"term": term}

    @app.agent
    async def shop(ctx: Any, order: Order) -> str:
        reply = await ctx.llm(f"buy {order.quantity} {order.item}")
        return str(reply.text)

    @app.agent
    async def napper(ctx: Any, nap: Nap) -> dict[str, Any]:
        notes = []
        for i in range(nap.naps):
            notes.append((await ctx.llm(f"note {i}")).text)
            await ctx.sleep(nap.seconds)
        found = await ctx.tool(lookup, term="otters")
        return {"notes": notes, "found": found}

    return app


@dataclass
class Env:
    rt: LocalRuntime
    api: FastAPI
    http: httpx.AsyncClient

    @property
    def log(self) -> Log:
        return self.rt.log

    @property
    def topics(self) -> Topics:
        return self.rt.topics


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    async with api.router.lifespan_context(api):
        yield


BACKENDS = pytest.mark.parametrize("env", backend_params(), indirect=True)
"""Runs a test on the embedded log and on Kafka (the other tests: the embedded log only)."""


def runtime(
    request: pytest.FixtureRequest | None, app: App, data: Path
) -> AbstractAsyncContextManager[LocalRuntime]:
    """``app`` on the embedded log, or on Kafka when ``request`` is parametrized so."""
    return runtime_for(request, app, data, "api")


@pytest.fixture
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    app = make_app()
    async with runtime(request, app, tmp_path / "data") as rt:
        api = create_app(
            rt.log,
            state_dir=tmp_path / "api-state",
            keys=KeyRing.from_specs(KEY_SPECS),
            app=app,
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


FOLDS: Calls | None = None
"""The folds of the projector of the API the current test started last (:func:`observe_folds`):
what the API answers changes only then."""


def observe_folds(api: FastAPI) -> Calls:
    """Count the folds of ``api``'s projector in :data:`FOLDS` (a test seam: its fold hook)."""
    global FOLDS
    FOLDS = observe_calls(api.state.api.projector, "_on_fold")
    return FOLDS


async def eventually(probe: Callable[[], Awaitable[T | None]], within_s: float = 20.0) -> T:
    """``probe()``'s first value that is not ``None``: probed now and again after each fold of
    the API's projections (nothing the API answers changes in between)."""
    folds = FOLDS
    assert folds is not None, "observe_folds(api) first"
    try:
        async with asyncio.timeout(within_s):
            while True:
                seen = folds.count
                value = await probe()
                if value is not None:
                    return value
                await folds.after(seen)
    except TimeoutError:
        raise AssertionError(f"condition not met within {within_s}s") from None


async def run_row(http: httpx.AsyncClient, run_id: str, *, status: str | None = None) -> Any:
    async def probe() -> Any:
        r = await http.get(f"/v1/runs/{run_id}", headers=VIEWER)
        if r.status_code == 200 and (status is None or r.json()["status"] == status):
            return r.json()
        return None

    return await eventually(probe)


async def budget_row(
    http: httpx.AsyncClient, path: str, probe: Callable[[Any], bool] = lambda _: True
) -> Any:
    """``GET /v1/budgets/{path}`` once the API's views show it (and ``probe`` holds)."""

    async def found() -> Any:
        r = await http.get(f"/v1/budgets/{path}", headers=VIEWER)
        return r.json() if r.status_code == 200 and probe(r.json()) else None

    return await eventually(found)


async def start(http: httpx.AsyncClient, agent: str, input: Any, **extra: Any) -> str:
    r = await http.post(
        "/v1/runs", json={"agent": agent, "input": input, **extra}, headers=OPERATOR
    )
    assert r.status_code == 202, r.text
    return str(r.json()["run_id"])


async def end_offsets(log: Log, topic: str) -> list[int]:
    count = await log.partition_count(topic)
    return [await log.end_offset(topic, p) for p in range(count)]


async def all_values(env: Env) -> bytes:
    out = b""
    for topic in (env.topics.commands, env.topics.events, env.topics.notices):
        for p in range(await env.log.partition_count(topic)):
            out += b"".join(r.value + (r.key or b"") for r in await env.log.read(topic, p, 0))
    return out


# ---------------------------------------------------------------------------- auth and roles

MUTATING = [
    ("POST", "/v1/runs", {"agent": "shop", "input": {"item": "tea", "quantity": 1}}),
    ("POST", "/v1/runs/{run}/cancel", {"reason": "no"}),
    ("POST", "/v1/runs/{run}/resume", None),
]
READS = [
    "/v1/runs",
    "/v1/runs/{run}",
    "/v1/runs/{run}/steps",
    "/v1/runs/{run}/steps/1",
    "/v1/costs",
    "/v1/costs/agent",
    "/v1/costs/day",
    "/v1/budgets",
    "/v1/budgets/tenant/acme",
    "/v1/agents",
    "/v1/me",
]


@BACKENDS
async def test_roles_guard_every_route(env: Env) -> None:
    http = env.http
    run_id = await start(http, "napper", {"naps": 1, "seconds": 30})
    await run_row(http, run_id, status="waiting")
    await Ledger(env.log, env.topics.ledger).set_limit("tenant:acme", Decimal(5), "ops")
    await budget_row(http, "tenant/acme")  # a budget the ledger knows: 200 below
    before = await end_offsets(env.log, env.topics.commands)

    for method, path, body in MUTATING:
        url = path.format(run=run_id)
        r = await http.request(method, url, json=body)
        assert r.status_code == 401, (url, r.text)
        assert r.json()["detail"] == "an API key is required"
        assert r.headers["www-authenticate"] == "Bearer"
        r = await http.request(method, url, json=body, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
        r = await http.request(method, url, json=body, headers=VIEWER)
        assert r.status_code == 403, (url, r.text)
        assert "needs operator" in r.json()["detail"]
    assert await end_offsets(env.log, env.topics.commands) == before  # nothing published

    for path in READS:
        url = path.format(run=run_id)
        assert (await http.get(url)).status_code == 401, url
        r = await http.get(url, headers=VIEWER)
        assert r.status_code == 200, (url, r.text)
        r = await http.get(url, params={"key": VIEWER_SECRET})  # only the event streams take it
        assert r.status_code == 401 and "?key= is accepted only by the event" in r.text, url
    assert (await http.get("/v1/me", headers=APPROVER)).json() == {
        "name": "boss",
        "role": "approver",
    }

    # the operator cancels; the key's name is the issuer, recorded as who cancelled
    r = await http.post(f"/v1/runs/{run_id}/cancel", json={"reason": "enough"}, headers=OPERATOR)
    assert r.status_code == 202 and r.json() == {
        "run_id": run_id,
        "command": "cancel",
        "issuer": "ops",
    }
    row = await run_row(http, run_id, status="cancelled")
    assert row["cancelled_by"] == "ops"
    assert row["error"]["message"] == "enough"
    r = await http.post(f"/v1/runs/{run_id}/cancel", headers=OPERATOR)
    assert r.status_code == 409 and "already ended (cancelled)" in r.json()["detail"]
    r = await http.post("/v1/runs/no-such-run/resume", headers=APPROVER)  # approver >= operator
    assert r.status_code == 404 and r.json()["detail"] == "unknown run 'no-such-run'"

    commands = []
    for p in range(await env.log.partition_count(env.topics.commands)):
        for record in await env.log.read(env.topics.commands, p, 0):
            commands.append(command_codec().decode(record.value))
    assert {c.issuer for c in commands if c.run_id == run_id} == {"ops"}
    values = await all_values(env)
    assert not any(secret.encode() in values for secret in SECRETS)  # never written to the log


async def test_health_docs_and_dashboard_need_no_key(env: Env) -> None:
    http = env.http
    r = await http.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    spec = (await http.get("/openapi.json")).json()
    for path in (
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/events",
        "/v1/costs",
        "/v1/costs/{dimension}",
        "/v1/budgets",
        "/v1/budgets/{scope}/{name}",
    ):
        assert path in spec["paths"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    docs = await http.get("/docs")  # the spec, not Swagger UI's page of CDN scripts
    assert docs.status_code == 307 and docs.headers["location"] == "/openapi.json"
    page = await http.get("/")
    assert page.status_code == 200 and 'src="app.js"' in page.text
    assert (await http.get("/app.js")).status_code == 200
    assert (await http.get("/style.css")).status_code == 200


# ---------------------------------------------------------------------------- bad input


@BACKENDS
async def test_bad_input_is_refused_and_nothing_is_published(env: Env) -> None:
    http = env.http
    before = await end_offsets(env.log, env.topics.commands)
    json_headers = {**OPERATOR, "Content-Type": "application/json"}

    r = await http.post("/v1/runs", content=b'{"agent": "shop", "input": ', headers=json_headers)
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]

    r = await http.post("/v1/runs", json={"agent": "nope", "input": {}}, headers=OPERATOR)
    assert r.status_code == 404
    assert r.json()["detail"] == "unknown agent 'nope' (agents: napper, shop)"
    assert r.json()["agents"] == ["napper", "shop"]

    bad = {"agent": "shop", "input": {"item": "tea", "quantity": "lots"}}
    r = await http.post("/v1/runs", json=bad, headers=OPERATOR)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("invalid input for agent 'shop': quantity:")
    assert r.json()["errors"][0]["loc"] == ["quantity"]

    r = await http.post("/v1/runs", json={"input": {}}, headers=OPERATOR)  # no agent
    assert r.status_code == 422 and "agent" in r.json()["detail"]
    r = await http.post("/v1/runs", json={"agent": "shop", "extra": 1}, headers=OPERATOR)
    assert r.status_code == 422 and "extra" in r.json()["detail"]
    r = await http.post("/v1/runs", json={"agent": "shop", "run_id": "a/b"}, headers=OPERATOR)
    assert r.status_code == 422 and "run_id" in r.json()["detail"]
    nan = b'{"agent": "shop", "input": {"item": "x", "quantity": NaN}}'
    r = await http.post("/v1/runs", content=nan, headers=json_headers)
    assert r.status_code == 422 and "not representable" in r.json()["detail"]

    huge = {"agent": "shop", "input": {"item": "x" * (1024 * 1024), "quantity": 1}}
    r = await http.post("/v1/runs", json=huge, headers=OPERATOR)
    assert r.status_code == 413
    assert r.json()["detail"] == "the request body exceeds the limit of 1048576 bytes"
    big = {"agent": "shop", "input": {"item": "x" * 300_000, "quantity": 1}}
    r = await http.post("/v1/runs", json=big, headers=OPERATOR)
    assert r.status_code == 413 and "exceeds the limit of 262144 bytes" in r.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b" " * 65536

    r = await http.post("/v1/runs", content=chunks(), headers=json_headers)
    assert r.status_code == 413

    assert await end_offsets(env.log, env.topics.commands) == before
    # and a good start still works
    run_id = await start(env.http, "shop", {"item": "tea", "quantity": 2}, tenant="acme")
    assert (await run_row(http, run_id, status="completed"))["tenant"] == "acme"


# ---------------------------------------------------------------------------- queries and costs


@BACKENDS
async def test_list_filters_pages_steps_and_costs(env: Env) -> None:
    http = env.http
    ids = [
        await start(http, "shop", {"item": "tea", "quantity": 1}, tenant="acme"),
        await start(http, "shop", {"item": "milk", "quantity": 2}, tenant="acme"),
        await start(http, "shop", {"item": "jam", "quantity": 3}, tenant="zeta"),
        await start(http, "napper", {"naps": 1, "seconds": 0.01}),
    ]
    rows = [await run_row(http, i, status="completed") for i in ids]

    page = (await http.get("/v1/runs", params={"tenant": "acme"}, headers=VIEWER)).json()
    assert {r["run_id"] for r in page["runs"]} == set(ids[:2])
    page = (await http.get("/v1/runs", params={"agent": "napper"}, headers=VIEWER)).json()
    assert [r["run_id"] for r in page["runs"]] == [ids[3]]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"status": "completed", "limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = (await http.get("/v1/runs", params=params, headers=VIEWER)).json()
        seen += [r["run_id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    r = await http.get("/v1/runs", params={"limit": 501}, headers=VIEWER)
    assert r.status_code == 422 and "limit" in r.json()["detail"]
    r = await http.get("/v1/runs", params={"cursor": "bogus"}, headers=VIEWER)
    assert r.status_code == 400 and "invalid cursor" in r.json()["detail"]
    r = await http.get("/v1/runs", params={"status": "sleeping"}, headers=VIEWER)
    assert r.status_code == 422
    future = int(time.time() * 1000) + 60_000
    r = await http.get("/v1/runs", params={"since_ms": future}, headers=VIEWER)
    assert r.json()["runs"] == []

    steps = (await http.get(f"/v1/runs/{ids[3]}/steps", headers=VIEWER)).json()["steps"]
    assert [s["kind"] for s in steps] == ["model", "timer", "tool"]
    assert steps[0]["usage"]["input"] > 0 and steps[0]["request"] is not None
    light = (await http.get(f"/v1/runs/{ids[3]}/steps?payloads=false", headers=VIEWER)).json()
    assert all(s["request"] is None and s["response"] is None for s in light["steps"])
    one = (await http.get(f"/v1/runs/{ids[3]}/steps/{steps[2]['seq']}", headers=VIEWER)).json()
    assert json.loads(one["response"]) == {"term": "otters"}
    assert (await http.get(f"/v1/runs/{ids[3]}/steps/999", headers=VIEWER)).status_code == 404
    assert (await http.get("/v1/runs/nope/steps", headers=VIEWER)).status_code == 404

    costs = (await http.get("/v1/costs", headers=VIEWER)).json()
    total = sum(float(r["cost_usd"]) for r in rows)
    assert total > 0
    assert float(costs["total"]["cost_usd"]) == pytest.approx(total)
    assert costs["total"]["runs"] == 4 and costs["total"]["model_calls"] == 4
    assert costs["total"]["tokens"]["input"] == sum(r["tokens"]["input"] for r in rows)
    by_tenant = {line["key"]: line for line in costs["by_tenant"]}
    assert by_tenant["acme"]["runs"] == 2 and by_tenant[""]["runs"] == 1
    assert float(by_tenant["acme"]["cost_usd"]) == pytest.approx(
        float(rows[0]["cost_usd"]) + float(rows[1]["cost_usd"])
    )
    by_agent = {line["key"]: line for line in costs["by_agent"]}
    assert by_agent["shop"]["runs"] == 3 and by_agent["napper"]["runs"] == 1
    (model,) = costs["by_model"]
    assert model["key"] == "mock/mock-1" and model["model_calls"] == 4
    assert float(model["cost_usd"]) == pytest.approx(total)
    zeta = (await http.get("/v1/costs", params={"tenant": "zeta"}, headers=VIEWER)).json()
    assert zeta["total"]["runs"] == 1 and zeta["by_tenant"][0]["key"] == "zeta"
    day = 86_400  # a window of yesterday to tomorrow (UTC): the runs' day even at midnight
    since, until = (time.strftime("%Y-%m-%d", time.gmtime(time.time() + d)) for d in (-day, day))
    window = {"agent": "shop", "since_day": since, "until_day": until}
    shop = (await http.get("/v1/costs", params=window, headers=VIEWER)).json()
    assert shop["total"]["runs"] == 3 and [a["key"] for a in shop["by_agent"]] == ["shop"]
    before = {"until_day": "2000-01-01"}
    assert (await http.get("/v1/costs", params=before, headers=VIEWER)).json()["total"] == {
        "key": "total", "runs": 0, "model_calls": 0, "cost_usd": "0", "unpriced_calls": 0,
        "tokens": {"input": 0, "output": 0, "cached_input": 0, "cache_write": 0, "reasoning": 0},
    }  # fmt: skip
    r = await http.get("/v1/costs", params={"since_day": "yesterday"}, headers=VIEWER)
    assert r.status_code == 422


async def test_costs_by_dimension_and_shared_budgets(env: Env) -> None:
    http = env.http
    ledger = Ledger(env.log, env.topics.ledger, writer="test")
    await ledger.set_limit("tenant:acme", Decimal("2.5"), "ops")
    await ledger.set_limit("tenant:north/east", Decimal(1), "ops")
    shop_id = await start(http, "shop", {"item": "tea", "quantity": 2}, tenant="acme")
    nap_id = await start(http, "napper", {"naps": 2, "seconds": 0.01})
    shop = await run_row(http, shop_id, status="completed")
    nap = await run_row(http, nap_id, status="completed")
    runs = {"shop": shop, "napper": nap}
    total = Decimal(shop["cost_usd"]) + Decimal(nap["cost_usd"])
    assert Decimal(shop["cost_usd"]) > 0 and Decimal(nap["cost_usd"]) > 0

    async def rows(dimension: str, **params: str) -> list[Any]:
        r = await http.get(f"/v1/costs/{dimension}", params=params, headers=VIEWER)
        assert r.status_code == 200, r.text
        assert r.json()["dimension"] == dimension
        assert all(row["dimension"] == dimension for row in r.json()["rows"])
        return list(r.json()["rows"])

    def cost_of(lines: list[Any]) -> Decimal:
        return sum((Decimal(line["cost_usd"]) for line in lines), Decimal(0))

    by_agent = {row["agent"]: row for row in await rows("agent")}
    assert set(by_agent) == {"shop", "napper"}
    for agent, run in runs.items():
        line = by_agent[agent]
        assert Decimal(line["cost_usd"]) == Decimal(run["cost_usd"])
        assert line["tokens"] == run["tokens"] and line["model_calls"] == run["model_calls"]
        assert line["unpriced_calls"] == 0
    assert (by_agent["shop"]["model_calls"], by_agent["napper"]["model_calls"]) == (1, 2)

    days = await rows("day")
    run_days = {utc_day(r[f]) for r in runs.values() for f in ("started_ms", "ended_ms")}
    assert days and {row["day"] for row in days} <= run_days
    assert cost_of(days) == total and sum(row["model_calls"] for row in days) == 3
    assert cost_of(await rows("tenant-day")) == total
    shop_days = await rows("agent-day", name="shop")
    assert {row["agent"] for row in shop_days} == {"shop"}
    assert cost_of(shop_days) == Decimal(shop["cost_usd"])
    [acme] = await rows("tenant", name="acme")
    assert acme["tenant"] == "acme" and Decimal(acme["cost_usd"]) == Decimal(shop["cost_usd"])
    [no_tenant] = await rows("tenant", name="")
    assert no_tenant["tenant"] == "" and Decimal(no_tenant["cost_usd"]) == Decimal(nap["cost_usd"])
    [model] = await rows("model")
    assert (model["provider"], model["model"], model["model_calls"]) == ("mock", "mock-1", 3)
    assert Decimal(model["cost_usd"]) == total
    assert await rows("agent", name="nobody") == []

    r = await http.get("/v1/costs/planet", headers=VIEWER)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("invalid request: path.dimension: Input should be")
    assert "'agent-day'" in r.json()["detail"]
    r = await http.get("/v1/costs/agent", params={"name": "x" * 201}, headers=VIEWER)
    assert r.status_code == 422 and "name" in r.json()["detail"]

    # the tenant's shared budget: the limit set on the ledger, and the run's settled spend
    spend = Decimal(shop["cost_usd"])
    budget = await budget_row(
        http, "tenant/acme", lambda b: Decimal(b["spent"]) == spend and b["in_flight"] == 0
    )
    assert (budget["key"], budget["scope"], budget["name"]) == ("tenant:acme", "tenant", "acme")
    assert (budget["limit"], budget["limit_by"]) == ("2.5", "ops")
    assert Decimal(budget["reserved"]) == 0 and Decimal(budget["committed"]) == spend
    assert (budget["grants"], budget["denials"], budget["settles"]) == (1, 0, 1)
    assert budget["reservations"] == {}
    listed = (await http.get("/v1/budgets", headers=VIEWER)).json()["budgets"]
    assert [b["key"] for b in listed] == ["tenant:acme", "tenant:north/east"]
    assert listed[0] == budget
    slashed = (await http.get("/v1/budgets/tenant/north/east", headers=VIEWER)).json()
    assert (slashed["name"], slashed["limit"], slashed["spent"]) == ("north/east", "1", "0")

    r = await http.get("/v1/budgets/tenant/nobody", headers=VIEWER)
    assert r.status_code == 404
    assert r.json()["detail"] == "no shared budget 'tenant:nobody': the ledger has no record of it"
    r = await http.get("/v1/budgets/agent/shop", headers=VIEWER)  # no agent limit: not tracked
    assert r.status_code == 404
    r = await http.get("/v1/budgets/planet/x", headers=VIEWER)
    assert r.status_code == 422 and "scope" in r.json()["detail"]


# ---------------------------------------------------------------------------- live events (SSE)


@dataclass
class Message:
    id: int | None
    event: str
    data: Any


async def read_sse(
    http: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    *,
    take: int | None = None,
    into: list[Message] | None = None,
    on_message: Callable[[Message], None] | None = None,
) -> list[Message]:
    """SSE messages until the stream ends (or ``take`` journal events were read); ``into``
    receives them as they arrive, and ``on_message`` is called with each."""
    out: list[Message] = [] if into is None else into
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
                continue
            if "data" in fields:
                ident = fields.get("id")
                message = Message(
                    int(ident) if ident is not None else None,
                    fields.get("event", "message"),
                    json.loads(fields["data"]),
                )
                out.append(message)
                if on_message is not None:
                    on_message(message)
                if take is not None and sum(m.event == "message" for m in out) >= take:
                    break
            fields = {}
    return out


def journal(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.event == "message"]


@BACKENDS
async def test_live_events_over_uvicorn_mid_run_and_resume(env: Env) -> None:
    http = env.http
    run_id = await start(http, "napper", {"naps": 4, "seconds": 0.4})
    row = await eventually(
        lambda: _row_if(http, run_id, lambda r: r["last_seq"] >= 3 and r["status"] != "completed")
    )
    assert row["status"] in ("running", "waiting")  # joined mid-run

    async with serving(env.api) as base, httpx.AsyncClient(base_url=base, timeout=30) as live:
        url = f"/v1/runs/{run_id}/events"

        async def resumed_subscriber() -> list[Message]:
            first = await read_sse(live, url, VIEWER, take=2)  # drops the connection
            last = journal(first)[-1].id
            assert last is not None
            rest = await read_sse(live, url, {**VIEWER, "Last-Event-ID": str(last)})
            return journal(first) + journal(rest)

        whole, resumed = await asyncio.gather(read_sse(live, url, VIEWER), resumed_subscriber())
        # EventSource style: the key in the query string
        by_query = await read_sse(live, f"{url}?key={VIEWER_SECRET}", {})

        assert whole[-1].event == "end" and whole[-1].data["status"] == "completed"
        events = journal(whole)
        n = len(events)
        assert n >= 4 * 4 + 4
        assert [m.id for m in events] == list(range(n))  # every event once, in order
        assert [m.data["seq"] for m in events] == list(range(n))
        assert events[0].data["type"] == "RunStarted"
        assert events[-1].data["type"] == "RunCompleted"
        assert json.loads(events[-1].data["payload"]["output"])["found"] == {"term": "otters"}
        assert [m.id for m in resumed] == list(range(n))
        assert [m.data for m in journal(by_query)] == [m.data for m in events]

        # the log itself agrees
        logged = [e.seq async for e in env.rt.client.events(run_id)]
        assert logged == list(range(n))
        completed = [m.data for m in events if m.data["type"] == "ModelCallCompleted"]
        assert all(isinstance(c["payload"]["cost_usd"], str) for c in completed)

        # after the end: resume from seq 5 gives the rest; from the last seq, 204 (stop)
        tail = await read_sse(live, url, {**VIEWER, "Last-Event-ID": "5"})
        assert [m.id for m in journal(tail)] == list(range(6, n))
        r = await live.get(url, headers={**VIEWER, "Last-Event-ID": str(n - 1)})
        assert r.status_code == 204
        r = await live.get(url, headers={**VIEWER, "Last-Event-ID": "x"})
        assert r.status_code == 400 and "Last-Event-ID" in r.json()["detail"]
        r = await live.get("/v1/runs/nope/events", headers=VIEWER)
        assert r.status_code == 404 and r.json()["detail"] == "unknown run 'nope'"
        assert (await live.get(url)).status_code == 401


async def _row_if(
    http: httpx.AsyncClient, run_id: str, ok: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    r = await http.get(f"/v1/runs/{run_id}", headers=VIEWER)
    if r.status_code == 200 and ok(r.json()):
        return dict(r.json())
    return None


async def test_events_of_a_run_started_a_moment_ago_are_waited_for(env: Env) -> None:
    async with serving(env.api) as base, httpx.AsyncClient(base_url=base, timeout=30) as live:
        r = await live.post(
            "/v1/runs",
            json={"agent": "shop", "input": {"item": "a", "quantity": 1}},
            headers=OPERATOR,
        )
        run_id = r.json()["run_id"]
        messages = await read_sse(live, f"/v1/runs/{run_id}/events", VIEWER)
        types = [m.data["type"] for m in journal(messages)]
        assert types[0] == "RunStarted" and types[-1] == "RunCompleted"


async def test_access_log_never_shows_a_key(env: Env) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect()
    access = logging.getLogger("uvicorn.access")
    async with serving(env.api, log_level="info") as base:
        access.addHandler(handler)
        try:
            async with httpx.AsyncClient(base_url=base) as live:
                r = await live.get("/v1/runs", params={"key": OPERATOR_SECRET, "limit": 5})
                assert r.status_code == 401  # refused off the event streams, still redacted
        finally:
            access.removeHandler(handler)
    assert any(f"key={REDACTED}" in line for line in lines), lines
    assert not any(OPERATOR_SECRET in line for line in lines)
    assert redact("/x?a=1&key=abc&b=2") == f"/x?a=1&key={REDACTED}&b=2"


# ---------------------------------------------------------------------------- keys and CLI


A, B, C, X = (f"secret-{c * 4}-0123456789abcdef0123456789" for c in "abcx")


def test_keyring_parsing_and_roles() -> None:
    ring = KeyRing.from_specs([f"a:viewer:{A}"], env=f"b:OPERATOR:sec:ret:{B}, c:approver:{C}")
    assert ring.names() == [("a", Role.VIEWER), ("b", Role.OPERATOR), ("c", Role.APPROVER)]
    principal = ring.authenticate(f"sec:ret:{B}")
    assert principal is not None and principal.name == "b" and principal.role == Role.OPERATOR
    assert ring.authenticate(f"{A} ") is None and ring.authenticate("") is None
    assert Role.VIEWER < Role.OPERATOR < Role.APPROVER
    assert "secret" not in repr(ring)
    bad = {
        "just-a-secret-value": "NAME:ROLE:SECRET",
        f"x:admin:{X}": "unknown role 'admin'",
        "x:viewer:short-secret-xxxx": "has 17 characters; at least 32 are required",
        f"x:viewer:{X[:31]}": "has 31 characters; at least 32 are required",
        f"bad name:viewer:{X}": "bad API key name",
    }
    for spec, message in bad.items():
        with pytest.raises(ValueError, match=message) as info:
            KeyRing.from_specs([spec])
        assert "secret-xxxx" not in str(info.value) and "just-a-secret" not in str(info.value)
    with pytest.raises(ValueError, match="given twice"):
        KeyRing.from_specs([f"a:viewer:{A}", f"a:viewer:{B}"])
    with pytest.raises(ValueError, match="same secret"):
        KeyRing.from_specs([f"a:viewer:{A}", f"b:operator:{A}"])


def test_serve_command_registers_and_checks_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    @click.group()
    @click.pass_context
    def main(ctx: click.Context) -> None:
        ctx.obj = type("S", (), {"data": Path("unused"), "kafka": None})()

    register(main)
    runner = CliRunner()
    monkeypatch.delenv("WAKELINE_API_KEYS", raising=False)
    result = runner.invoke(main, ["serve", "--help"])
    assert result.exit_code == 0 and "NAME:ROLE:SECRET" in result.output
    result = runner.invoke(main, ["serve"])
    assert result.exit_code == 2 and "no API keys" in result.output
    result = runner.invoke(main, ["serve", "--api-key", "my-very-secret-token"])
    assert result.exit_code == 2 and "NAME:ROLE:SECRET" in result.output
    assert "my-very-secret-token" not in result.output

    served: dict[str, Any] = {}

    async def run_server(**options: Any) -> None:
        served.update(options)

    monkeypatch.setattr("wakeline.api.serve.run_server", run_server)
    secret = "alice:viewer:" + "s" * 32
    result = runner.invoke(main, ["serve", "--api-key", secret, "--max-streams-per-key", "3"])
    assert result.exit_code == 0, result.output
    assert served["max_streams_per_key"] == 3


async def test_a_poison_record_is_skipped_by_the_event_stream_with_a_notice(env: Env) -> None:
    """An undecodable record keyed by the run in the events topic: the SSE stream says where
    it skipped it and goes on to the run's end, every event once and in order."""
    run_id = await start(env.http, "napper", {"naps": 2, "seconds": 0.2})
    await wait_for_event(env.rt.client, run_id, "TimerScheduled")  # past its start, mid-run
    poison = OutRecord(run_id.encode(), b"\xc3\x01" + b"\xff" * 12)
    [(partition, offset)] = await env.log.append(env.topics.events, [poison])
    messages = await read_sse(env.http, f"/v1/runs/{run_id}/events", VIEWER)
    [skipped] = [m for m in messages if m.event == "skipped"]
    assert (skipped.data["partition"], skipped.data["offset"]) == (partition, offset)
    assert f"@{offset}" in skipped.data["detail"]
    events = journal(messages)
    assert [m.data["seq"] for m in events] == list(range(len(events)))
    assert events[-1].data["type"] == "RunCompleted" and messages[-1].event == "end"


async def test_run_lists_are_summaries_and_steps_come_in_pages(env: Env) -> None:
    """A page of runs leaves out inputs and outputs unless asked (``fields=``), so its size is
    bounded by the number of runs, not by what they carry; a run's steps come in pages."""
    http = env.http
    big = await start(http, "shop", {"item": "x" * 100_000, "quantity": 1})
    napper = await start(http, "napper", {"naps": 3, "seconds": 0.01})
    for run_id in (big, napper):
        await wait_until_ended(env.rt.client, run_id)
    await eventually(lambda: _row_if(http, napper, lambda r: r["status"] == "completed"))
    await eventually(lambda: _row_if(http, big, lambda r: r["status"] == "completed"))

    summaries = await http.get("/v1/runs", headers=VIEWER)
    assert summaries.status_code == 200 and len(summaries.content) < 5_000, len(summaries.content)
    assert all(r["input"] is None and r["output"] is None for r in summaries.json()["runs"])
    full = (await http.get("/v1/runs?fields=input,output", headers=VIEWER)).json()["runs"]
    assert {r["run_id"]: len(r["input"]) for r in full}[big] > 100_000
    r = await http.get("/v1/runs?fields=input,secrets", headers=VIEWER)
    assert r.status_code == 400 and "unknown fields secrets" in r.json()["detail"]

    url = f"/v1/runs/{napper}/steps"
    whole = (await http.get(url, headers=VIEWER)).json()
    assert len(whole["steps"]) == 7 and whole["next_cursor"] is None  # 3 calls, 3 timers, 1 tool
    pages, cursor = [], None
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (await http.get(url + query, headers=VIEWER)).json()
        pages.append([s["seq"] for s in page["steps"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [seq for p in pages for seq in p] == [s["seq"] for s in whole["steps"]]
    assert (await http.get(url + "?cursor=x", headers=VIEWER)).status_code == 422
