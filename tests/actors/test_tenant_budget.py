"""A tenant budget holds across three worker processes and every partition, on the embedded log
and on a real Kafka broker (where the ledger is the test's own ``<prefix>.ledger`` topic)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest
from backends import Backend, backend_for, backend_params, runtime_for
from tenant_agents import make_app

from wakeline.actors.budget_waits import ROOM
from wakeline.client import Client
from wakeline.ledger import Ledger, ledger_key
from wakeline.projections.views import Views
from wakeline.replay import read_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    BudgetExceeded,
    BudgetRaised,
    Event,
    ModelCallCompleted,
    ModelCallInterrupted,
    RunCompleted,
    RunStarted,
)
from wakeline.schemas.ledger import Reserve, Settle, ledger_codec
from wakeline.testing import wait_for_event
from wakeline.testing.harness import LocalRuntime
from wakeline.testing.journals import Journals
from wakeline.testing.seams import observe_calls
from wakeline.topics.port import Log
from wakeline.topics.specs import DEFAULT_TOPICS, Topics

RUNS = 24

pytestmark = pytest.mark.slow


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return backend_for(request, tmp_path, "tenant")


@pytest.fixture(params=backend_params())
async def rt(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    async with runtime_for(request, make_app(), tmp_path, "agentbudget") as runtime:
        yield runtime


async def spend(log: Log, run_ids: list[str], topics: Topics = DEFAULT_TOPICS) -> Decimal:
    total = Decimal(0)
    for run_id in run_ids:
        for raw in await read_journal(log, run_id, topics=topics):
            payload = event_codec().decode(raw).payload
            if isinstance(payload, ModelCallCompleted):
                assert payload.cost_usd is not None
                total += payload.cost_usd
    return total


async def settle(
    client: Client, run_ids: list[str], views: Views, *, raised: bool = False
) -> dict[str, str]:
    """Wait until every run completed or (unless ``raised``: the limit was raised, every run
    must complete) waits on a budget that has no room for it; their statuses.  A run denied by
    a shared budget is woken when its limit changes or when settled reservations leave room
    for the reservation it was denied, so "waits" means: its last event is ``BudgetExceeded``
    and the budget's room, with nothing else in flight, is below that reservation."""
    if raised:
        await asyncio.gather(
            *(wait_for_event(client, r, RunCompleted, timeout_s=60) for r in run_ids)
        )
        statuses = dict.fromkeys(run_ids, "completed")
    else:
        statuses = await quiescent(client, run_ids)
    await views.refresh()  # the views fold the same statuses
    assert {r: getattr(views.queries.get_run(r), "status", None) for r in run_ids} == statuses
    return statuses


async def quiescent(client: Client, run_ids: list[str]) -> dict[str, str]:
    topics = client.topics
    journals = Journals(client.log, topics.events)
    ledger = Ledger(client.log, topics.ledger)

    def lasts(j: Journals) -> dict[str, Event]:
        return {r: j.records[r][-1][1] for r in run_ids if j.records.get(r)}

    def settled(j: Journals) -> bool:
        last = lasts(j)
        return len(last) == len(run_ids) and all(
            isinstance(e.payload, RunCompleted | BudgetExceeded) for e in last.values()
        )

    try:
        async with asyncio.timeout(90):
            while True:
                await journals.wait(settled, timeout_s=90)
                waiting = {r: e for r, e in lasts(journals).items() if not e.is_terminal}
                if not await any_fits(ledger, waiting, journals):
                    return {r: "suspended" if r in waiting else "completed" for r in run_ids}
                await journals.wait(more_than(count(journals)), timeout_s=90)  # a run woke
    finally:
        await journals.aclose()


def count(j: Journals) -> int:
    return sum(len(records) for records in j.records.values())


def more_than(seen: int) -> Callable[[Journals], bool]:
    return lambda j: count(j) > seen


async def any_fits(ledger: Ledger, waiting: dict[str, Event], journals: Journals) -> bool:
    """Whether the shared budget of one of the ``waiting`` runs has room for the reservation it
    was denied (it will be woken), as the ledger shows it now."""
    for run_id, event in waiting.items():
        p = event.payload
        assert isinstance(p, BudgetExceeded)
        started = journals.records[run_id][0][1].payload
        assert isinstance(started, RunStarted)
        if p.scope not in ("tenant", "agent"):
            continue
        name = started.tenant if p.scope == "tenant" else started.agent
        state = await ledger.state(ledger_key(p.scope, name))
        if state.limit is None or state.committed + Decimal(p.reservation) <= state.limit:
            return True
    return False


async def reservations(log: Log, topics: Topics) -> dict[str, Decimal]:
    """Request id -> the dollars its ``Reserve`` asked for, from the ledger topic."""
    out: dict[str, Decimal] = {}
    for partition in range(await log.partition_count(topics.ledger)):
        for record in await log.read(topics.ledger, partition, 0, max_records=100_000):
            payload = ledger_codec().decode(record.value).payload
            if isinstance(payload, Reserve) and payload.usd != "unpriced":
                out[payload.request_id] = Decimal(payload.usd)
    return out


async def interrupted_charges(log: Log, topics: Topics, interrupted: set[str]) -> Decimal:
    """What the ledger charged for attempts a recovery closed as interrupted (pass only those
    it granted: a ``Settle`` of a denied reservation changes nothing): their first
    ``Settle``.  The new owner settles such an attempt at its worst case (it may have been
    billed), unless its first sender had settled it already at its actual cost (a sender
    settles before it journals the result, and its append was then fenced); never more than
    the attempt reserved."""
    reserved = await reservations(log, topics)
    first: dict[str, Decimal] = {}
    for partition in range(await log.partition_count(topics.ledger)):
        for record in await log.read(topics.ledger, partition, 0, max_records=100_000):
            payload = ledger_codec().decode(record.value).payload
            if isinstance(payload, Settle) and payload.request_id in interrupted:
                first.setdefault(payload.request_id, Decimal(payload.usd))
    assert all(first[r] <= reserved[r] for r in first), (first, reserved)
    return sum(first.values(), Decimal(0))


async def interrupted_attempts(log: Log, run_ids: list[str], topics: Topics) -> set[str]:
    """Request ids (``run:seq``) of the model call attempts a recovery closed as interrupted."""
    out: set[str] = set()
    for run_id in run_ids:
        for raw in await read_journal(log, run_id, topics=topics):
            payload = event_codec().decode(raw).payload
            if isinstance(payload, ModelCallInterrupted):
                out.add(f"{run_id}:{payload.step}")
    return out


async def test_tenant_budget_is_never_overspent_by_concurrent_workers(
    backend: Backend, tmp_path: Path
) -> None:
    topics = backend.topics
    log = await backend.create(partitions=4)
    ledger = Ledger(log, topics.ledger, writer="test")
    await ledger.set_limit("tenant:acme", Decimal(100), "test")
    command = backend.worker_command("tenant_agents.py:make_app()", session_s=2.0)
    workers = [await asyncio.to_thread(subprocess.Popen, command) for _ in range(3)]
    views = Views(log, tmp_path / "views", topics=topics)
    client = Client(log, topics=topics)
    try:
        run_ids = [
            (await client.start_run("shopper", n, tenant="acme")).run_id for n in range(RUNS)
        ]
        statuses = await settle(client, run_ids, views)
        suspended = [r for r, s in statuses.items() if s == "suspended"]
        assert suspended, "the budget should have stopped some runs"
        spent = await spend(log, run_ids, topics)
        assert Decimal(0) < spent <= Decimal(100)
        state = await ledger.state("tenant:acme")
        interrupted = await interrupted_attempts(log, run_ids, topics)
        # every grant was settled, but an attempt a rebalance interrupted stays reserved (it
        # may have been billed) while its run waits, and counts at its worst case once settled
        assert set(state.active) <= interrupted, (state.active, interrupted)
        assert state.committed <= Decimal(100)
        charged = await interrupted_charges(log, topics, interrupted & state.granted)
        assert state.spent == spent + charged

        raws = await read_journal(log, suspended[0], topics=topics)
        journal = [event_codec().decode(raw) for raw in raws]
        waiting = [e for e in journal if isinstance(e.payload, BudgetExceeded)]
        assert waiting[-1].payload.scope == "tenant"  # type: ignore[union-attr]
        assert Decimal(waiting[-1].payload.limit) == Decimal(100)  # type: ignore[union-attr]

        await ledger.set_limit("tenant:acme", Decimal(10_000), "test")
        statuses = await settle(client, run_ids, views, raised=True)
        assert set(statuses.values()) == {"completed"}
        total = await spend(log, run_ids, topics)
        assert total <= Decimal(10_000)
        state = await ledger.state("tenant:acme")
        interrupted = await interrupted_attempts(log, run_ids, topics)
        charged = await interrupted_charges(log, topics, interrupted & state.granted)
        assert state.spent == total + charged and not state.active
        for run_id in run_ids:
            raws = await read_journal(log, run_id, topics=topics)
            events = [event_codec().decode(raw) for raw in raws]
            assert [e.seq for e in events] == list(range(len(events)))
            assert sum(isinstance(e.payload, ModelCallCompleted) for e in events) == 3
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(20)
        views.close()
        await log.close()


async def test_an_agent_budget_spans_its_runs(rt: LocalRuntime, tmp_path: Path) -> None:
    ledger = Ledger(rt.log, rt.topics.ledger, writer="test")
    await ledger.set_limit("agent:shopper", Decimal(25), "test")
    with observe_calls(rt.worker.ledger, "catch_up") as folds:  # the worker's fold saw it
        await folds.until(lambda: rt.worker.ledger.has_limit("agent:shopper"))
    first = await rt.client.start_run("shopper", 1)
    second = await rt.client.start_run("shopper", 2)
    views = Views(rt.log, tmp_path / "views", topics=rt.topics)
    statuses = await settle(rt.client, [first.run_id, second.run_id], views)
    assert "suspended" in statuses.values()  # six calls of up to $12 do not fit in $25
    assert await spend(rt.log, [first.run_id, second.run_id], rt.topics) <= Decimal(25)
    await ledger.set_limit("agent:shopper", Decimal(1000), "test")
    assert await asyncio.wait_for(rt.client.result(first.run_id), 30) == 1
    assert await asyncio.wait_for(rt.client.result(second.run_id), 30) == 2
    state = await ledger.state("agent:shopper")
    assert state.spent == await spend(rt.log, [first.run_id, second.run_id], rt.topics)
    views.close()


async def test_runs_denied_by_a_tenant_budget_wake_when_reservations_leave_room(
    rt: LocalRuntime,
) -> None:
    """Each call reserves $100 and spends about $9: under a $500 limit at most five of the
    twelve runs have a call in flight, so most calls are denied at first; as reservations
    settle the room comes back and the denied runs are woken (no new limit is ever set) until
    all of them complete (12 x 3 x $9 leaves room for a last $100 reservation)."""
    ledger = Ledger(rt.log, rt.topics.ledger, writer="test")
    await ledger.set_limit("tenant:acme", Decimal(500), "test")
    with observe_calls(rt.worker.ledger, "catch_up") as folds:
        await folds.until(lambda: rt.worker.ledger.has_limit("tenant:acme"))
    run_ids = [(await rt.client.start_run("frugal", n, tenant="acme")).run_id for n in range(12)]
    results = await asyncio.gather(*(asyncio.wait_for(rt.client.result(r), 60) for r in run_ids))
    assert results == list(range(12))
    journals = [
        [event_codec().decode(raw) for raw in await read_journal(rt.log, r, topics=rt.topics)]
        for r in run_ids
    ]
    denied = [e for j in journals for e in j if isinstance(e.payload, BudgetExceeded)]
    woken = [e for j in journals for e in j if isinstance(e.payload, BudgetRaised)]
    assert denied, "the limit should have denied some calls at first"
    assert len(woken) == len(denied) and all(e.payload.by == ROOM for e in woken)
    state = await ledger.state("tenant:acme")
    assert state.limit == Decimal(500) and state.spent <= Decimal(500) and not state.active
    assert state.spent == await spend(rt.log, run_ids, rt.topics)
