"""A model call whose worker stopped after sending it may have been billed: the next owner
sends it again only as a new attempt that the run's and the shared budgets cover.

In process on the embedded log: the fake provider holds the first request (it was received,
never answered), the worker stops (its journal ends with the open ``ModelCallRequested``), and a
fresh worker on the same data directory recovers the run.  The provider's request count is what
could be billed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from governed_agents import make_app

from wakeline.core.governance import reservation_for
from wakeline.core.model import ModelRequest
from wakeline.core.pricing import PriceTable
from wakeline.ledger import Ledger
from wakeline.replay import read_journal, replay_run
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    Budget,
    BudgetExceeded,
    Event,
    ModelCallCompleted,
    ModelCallDenied,
    ModelCallInterrupted,
    ModelCallRequested,
)
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.harness import LocalRuntime, local_runtime


@pytest.fixture()
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as s:
        yield s


def worst_usd() -> Decimal:
    """The reservation of the ``spender`` agent's first call."""
    request = ModelRequest(
        "gpt-4o-mini", ({"role": "user", "content": "expensive question 0"},), max_tokens=1000
    )
    worst = reservation_for(PriceTable(), "openai", request)["usd"]
    assert worst is not None
    return worst


async def journal(rt: LocalRuntime, run_id: str) -> list[Event]:
    """The run's journal as it stands (does not wait for the run to end)."""
    codec = event_codec()
    return [codec.decode(raw) for raw in await read_journal(rt.log, run_id)]


async def until(rt: LocalRuntime, run_id: str, event_type: str) -> Event:
    async def first() -> Event:
        async for event in rt.client.events(run_id):
            if event.type == event_type:
                return event
        raise AssertionError(f"{run_id} ended without {event_type}")

    return await asyncio.wait_for(first(), 30)


async def sent_then_stopped(
    tmp_path: Path, server: FakeLLMServer, *, budget: Budget | None = None, tenant: str = ""
) -> str:
    """Start a one-call run; stop its worker once the provider received the call."""
    server.hold()
    async with local_runtime(make_app(server.openai_base_url, tmp_path), tmp_path) as rt:
        handle = await rt.client.start_run("spender", 1, budget=budget, tenant=tenant)
        assert await asyncio.to_thread(server.wait, received=1)
    server.release()
    return handle.run_id


async def test_a_one_call_budget_is_not_sent_twice(tmp_path: Path, server: FakeLLMServer) -> None:
    run_id = await sent_then_stopped(tmp_path, server, budget=Budget(model_calls=1))
    async with local_runtime(make_app(server.openai_base_url, tmp_path), tmp_path) as rt:
        exceeded = await until(rt, run_id, "BudgetExceeded")
        assert isinstance(exceeded.payload, BudgetExceeded)
        assert (exceeded.payload.metric, exceeded.payload.spent) == ("model_calls", "1")
        assert server.received == 1  # the interrupted call was not sent again
        types = [e.type for e in await journal(rt, run_id)]
        assert types[-2:] == ["ModelCallInterrupted", "BudgetExceeded"]
        await rt.client.raise_budget(run_id, "model_calls", 2)
        assert await asyncio.wait_for(rt.client.result(run_id), 30) == 1
        assert server.received == 2
        assert (await replay_run(rt.log, make_app("http://nowhere", tmp_path), run_id)).identical


async def test_a_two_call_budget_resends_once_and_completes(
    tmp_path: Path, server: FakeLLMServer
) -> None:
    run_id = await sent_then_stopped(tmp_path, server, budget=Budget(model_calls=2))
    async with local_runtime(make_app(server.openai_base_url, tmp_path), tmp_path) as rt:
        assert await asyncio.wait_for(rt.client.result(run_id), 30) == 1
        events = await journal(rt, run_id)
    assert server.received == 2
    payloads = [e.payload for e in events]
    [interrupted] = [p for p in payloads if isinstance(p, ModelCallInterrupted)]
    requests = [e for e in events if isinstance(e.payload, ModelCallRequested)]
    assert [(e.seq, e.payload.attempt) for e in requests] == [(1, 1), (3, 2)]  # type: ignore[union-attr]
    assert (interrupted.step, interrupted.attempt) == (1, 1)
    [completed] = [p for p in payloads if isinstance(p, ModelCallCompleted)]
    assert completed.step == 3
    async with local_runtime(make_app(server.openai_base_url, tmp_path), tmp_path) as rt:
        report = await replay_run(rt.log, make_app("http://nowhere", tmp_path), run_id)
        assert report.identical and report.ended, report


async def test_a_dollar_limit_holds_the_interrupted_worst_case(
    tmp_path: Path, server: FakeLLMServer
) -> None:
    worst = worst_usd()
    run_id = await sent_then_stopped(tmp_path, server, budget=Budget(usd=str(worst * 3 / 2)))
    async with local_runtime(make_app(server.openai_base_url, tmp_path), tmp_path) as rt:
        exceeded = await until(rt, run_id, "BudgetExceeded")
        assert isinstance(exceeded.payload, BudgetExceeded) and exceeded.payload.metric == "usd"
        assert Decimal(exceeded.payload.spent) == worst  # the interrupted attempt, reserved
        types = [e.type for e in await journal(rt, run_id)]
        assert types[-2:] == ["ModelCallInterrupted", "BudgetExceeded"]  # not even requested
        assert server.received == 1  # denied before dispatch


async def test_a_tenant_budget_keeps_the_interrupted_reservation(
    tmp_path: Path, server: FakeLLMServer
) -> None:
    worst = worst_usd()
    async with local_runtime(make_app(server.openai_base_url, tmp_path), tmp_path) as rt:
        await Ledger(rt.log, rt.topics.ledger, writer="test").set_limit(
            "tenant:acme", worst * 3 / 2, "test"
        )
    run_id = await sent_then_stopped(tmp_path, server, tenant="acme")
    async with local_runtime(make_app(server.openai_base_url, tmp_path), tmp_path) as rt:
        ledger = Ledger(rt.log, rt.topics.ledger, writer="test")
        await until(rt, run_id, "BudgetExceeded")
        assert server.received == 1  # the re-send did not fit next to the interrupted one
        state = await ledger.state("tenant:acme")
        assert state.active == {f"{run_id}:1": worst}
        denied = [e.payload for e in await journal(rt, run_id)]
        assert [type(p) for p in denied][-3:] == [
            ModelCallRequested,
            ModelCallDenied,
            BudgetExceeded,
        ]
        await ledger.set_limit("tenant:acme", Decimal(10), "test")
        assert await asyncio.wait_for(rt.client.result(run_id), 30) == 1
        assert server.received == 2
        events = await journal(rt, run_id)
        [completed] = [e.payload for e in events if isinstance(e.payload, ModelCallCompleted)]
        assert completed.cost_usd is not None
        state = await ledger.state("tenant:acme")
        assert state.active == {}  # the interrupted attempt counts as spent, at its worst case
        assert state.spent == completed.cost_usd + worst
