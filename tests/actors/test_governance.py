"""Governance before dispatch: policies, budgets and approval gates, on the embedded log and on
a real Kafka broker (real SDK).

The provider is the real OpenAI SDK talking to a local fake server that counts every request:
a denied call is never received by it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from backends import backend_params, runtime_for
from governed_agents import make_app

from wakeline.client import RunError
from wakeline.core.governance import reservation_for
from wakeline.core.model import ModelRequest
from wakeline.core.pricing import PriceTable
from wakeline.schemas.events import (
    Budget,
    BudgetExceeded,
    Event,
    GateOpened,
    GateResolved,
    PolicyDenied,
)
from wakeline.testing import LocalRuntime, wait_for_event
from wakeline.testing.fake_llm import FakeLLMServer


@pytest.fixture()
def server() -> AsyncIterator[FakeLLMServer]:
    with FakeLLMServer() as s:
        yield s  # type: ignore[misc]


@pytest.fixture(params=backend_params())
async def rt(
    request: pytest.FixtureRequest, tmp_path: Path, server: FakeLLMServer
) -> AsyncIterator[LocalRuntime]:
    app = make_app(server.openai_base_url, tmp_path)
    async with runtime_for(request, app, tmp_path, "gov") as runtime:
        yield runtime


async def journal(rt: LocalRuntime, run_id: str) -> list[Event]:
    return [e async for e in rt.client.events(run_id)]


async def test_a_policy_denial_never_reaches_the_provider(
    rt: LocalRuntime, server: FakeLLMServer
) -> None:
    handle = await rt.client.start_run("ask", "gpt-4o")
    with pytest.raises(RunError, match="PolicyDenied: no_big_models: gpt-4o is not allowed"):
        await rt.client.result(handle.run_id)
    denied = [e.payload for e in await journal(rt, handle.run_id) if e.type == "PolicyDenied"]
    assert denied == [PolicyDenied("model", "gpt-4o", "no_big_models", denied[0].reason, False)]
    assert server.received == 0

    refund = await rt.client.start_run("refunder", 500)
    with pytest.raises(RunError, match="refund of 500 is over 100"):
        await rt.client.result(refund.run_id)
    assert "ToolCallRequested" not in [e.type for e in await journal(rt, refund.run_id)]

    allowed = await rt.client.start_run("ask", "gpt-4o-mini")
    assert "fake reply" in await rt.client.result(allowed.run_id)
    assert server.received == 1


async def test_a_suspending_policy_waits_for_a_person(
    rt: LocalRuntime, server: FakeLLMServer
) -> None:
    approved = await rt.client.start_run("ask", "o1")
    await wait_for_event(rt.client, approved.run_id, PolicyDenied)
    await rt.wait_unloaded(approved.run_id)  # nothing in flight, nothing left in memory
    assert server.received == 0 and approved.run_id not in rt.worker.running_runs
    await rt.client.approve(approved.run_id, "no_big_models", "ok for this one")
    assert "fake reply" in await rt.client.result(approved.run_id)
    assert server.received == 1

    rejected = await rt.client.start_run("ask", "o1")
    await wait_for_event(rt.client, rejected.run_id, PolicyDenied)
    await rt.client.reject(rejected.run_id, "no_big_models", "too pricey")
    with pytest.raises(RunError, match=r"no_big_models: o1 needs .*; rejected by .*: too pricey"):
        await rt.client.result(rejected.run_id)
    assert server.received == 1


async def test_budget_denies_before_dispatch_and_resumes_after_a_raise(
    rt: LocalRuntime, server: FakeLLMServer
) -> None:
    # the worst case of one call fits; once the first call has cost anything, the second's
    # worst case no longer does
    request = ModelRequest(
        "gpt-4o-mini", ({"role": "user", "content": "expensive question 0"},), max_tokens=1000
    )
    worst = reservation_for(PriceTable(), "openai", request)["usd"]
    assert worst is not None
    limit = str(worst + Decimal("0.000000001"))
    handle = await rt.client.start_run("spender", 3, budget=Budget(usd=limit))
    exceeded = await wait_for_event(rt.client, handle.run_id, BudgetExceeded)
    payload = exceeded.payload
    assert isinstance(payload, BudgetExceeded)
    assert (payload.scope, payload.metric, payload.limit) == ("run", "usd", limit)
    assert Decimal(payload.reservation) == worst and Decimal(payload.spent) > 0
    await rt.wait_unloaded(handle.run_id)  # nothing in flight any more
    assert server.received == 1  # the second call was never sent
    await rt.client.raise_budget(handle.run_id, "usd", "1")
    assert await rt.client.result(handle.run_id) == 3
    assert server.received == 3  # nothing was redone
    events = await journal(rt, handle.run_id)
    assert [e.type for e in events].count("ModelCallRequested") == 3


async def test_calls_budget_and_bad_raise_commands(rt: LocalRuntime) -> None:
    handle = await rt.client.start_run("spender", 2, budget=Budget(model_calls=1))
    await wait_for_event(rt.client, handle.run_id, BudgetExceeded)
    await rt.client.raise_budget(handle.run_id, "dollars", "5")
    await rt.client.raise_budget(handle.run_id, "tokens", "5")  # not what the run waits on
    await rt.client.raise_budget(handle.run_id, "model_calls", "2")
    assert await rt.client.result(handle.run_id) == 2


async def test_an_approval_gate_records_who_decided(rt: LocalRuntime) -> None:
    handle = await rt.client.start_run("gated", 42)
    await wait_for_event(rt.client, handle.run_id, GateOpened)
    await rt.wait_unloaded(handle.run_id)
    assert handle.run_id not in rt.worker.running_runs  # no memory, no task while it waits
    await rt.client.approve(handle.run_id, "nope")  # unknown gate: rejected, run unaffected
    await rt.client.approve(handle.run_id, "pay", "looks right")
    assert (await rt.client.result(handle.run_id)).startswith("approved by ")
    resolved = [e.payload for e in await journal(rt, handle.run_id) if e.type == "GateResolved"]
    assert len(resolved) == 1 and isinstance(resolved[0], GateResolved)
    assert resolved[0].approved and resolved[0].reason == "looks right"

    other = await rt.client.start_run("gated", 7)
    await wait_for_event(rt.client, other.run_id, GateOpened)
    await rt.client.reject(other.run_id, "pay", "not today")
    assert (await rt.client.result(other.run_id)).endswith(": not today")


async def test_a_gate_timeout_is_a_durable_timer(rt: LocalRuntime) -> None:
    handle = await rt.client.start_run("hurried", 0.3)
    assert await asyncio.wait_for(rt.client.result(handle.run_id), 10) == "timed out"
