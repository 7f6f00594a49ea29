"""The costs and budgets projections, folded from a real (embedded) log through ``Views``."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wakeline.ledger import Ledger
from wakeline.projections import EVENTS_TOPIC, LEDGER_TOPIC
from wakeline.projections.costs import DIMENSIONS
from wakeline.projections.rows import BudgetRow, Tokens
from wakeline.projections.runner import catch_up
from wakeline.projections.store import JsonObject, ProjectionStore
from wakeline.projections.views import FORMAT_KEY, Views, query_projections
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    Event,
    EventPayload,
    ModelCallCompleted,
    ModelCallRequested,
    RunStarted,
)
from wakeline.schemas.ledger import LedgerRecord, Reserve, SetLimit, Settle, ledger_codec
from wakeline.schemas.usage import Usage
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.port import OutRecord
from wakeline.topics.specs import DEFAULT_TOPICS

MIDNIGHT = int(datetime(2024, 3, 2, tzinfo=UTC).timestamp() * 1000)
DAY1, DAY2 = "2024-03-01", "2024-03-02"
Call = tuple[int, str, str, Decimal | None, Usage]  # time_ms, provider, model, cost, usage


async def open_log(path: Path) -> EmbeddedLog:
    log = await EmbeddedLog.open(path)
    await log.create_topics(DEFAULT_TOPICS.specs(3))
    return log


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EmbeddedLog]:
    opened = await open_log(tmp_path / "log")
    yield opened
    await opened.close()


def event(run_id: str, seq: int, time_ms: int, payload: EventPayload) -> OutRecord:
    value = event_codec().encode(Event(run_id, seq, time_ms, "w1", payload))
    return OutRecord(run_id.encode(), value)


def run_records(run_id: str, agent: str, tenant: str, calls: list[Call]) -> list[OutRecord]:
    t0 = calls[0][0] - 10 if calls else MIDNIGHT
    out = [event(run_id, 0, t0, RunStarted(agent, "{}", tenant=tenant))]
    for time_ms, provider, model, cost, usage in calls:
        seq = len(out)
        out.append(event(run_id, seq, time_ms - 1, ModelCallRequested(provider, model, "d", "{}")))
        done = ModelCallCompleted(seq, provider, model, "id", model, "stop", "{}", usage, 5, cost)
        out.append(event(run_id, seq + 1, time_ms, done))
    return out


RUNS = dict(r1=("alice", "acme"), r2=("bob", "acme"), r3=("alice", "beta"), r4=("bob", "beta"))
CALLS: list[tuple[str, Call]] = [
    ("r1", (MIDNIGHT - 3_600_000, "openai", "gpt-4o", Decimal("0.0015"), Usage(10, 5, 2, 1, 3))),
    ("r1", (MIDNIGHT - 60_000, "anthropic", "claude", Decimal("0.25"), Usage(100, 50))),
    ("r2", (MIDNIGHT - 1, "openai", "gpt-4o", None, Usage(7, 3))),
    ("r2", (MIDNIGHT, "openai", "gpt-4o", Decimal("0.0001"), Usage(1, 1, 1, 0, 1))),
    ("r3", (MIDNIGHT + 5_000, "openai", "gpt-4o", Decimal("1.10"), Usage(40, 20))),
    ("r3", (MIDNIGHT + 6_000, "or", "meta/llama-3", None, Usage(2, 2))),
    ("r4", (MIDNIGHT + 9_000, "or", "meta/llama-3", Decimal("1E-8"), Usage(3))),
]
"""Two agents and two tenants over two UTC days; ``/`` in a model name; unpriced calls."""


async def append_runs(log: EmbeddedLog) -> None:
    for run_id, (agent, tenant) in RUNS.items():
        calls = [call for run, call in CALLS if run == run_id]
        await log.append(EVENTS_TOPIC, run_records(run_id, agent, tenant, calls))


def oracle() -> dict[tuple[str, ...], JsonObject]:
    """The expected rows, summed naively from :data:`RUNS`."""
    rows: dict[tuple[str, ...], JsonObject] = defaultdict(
        lambda: {"calls": 0, "unpriced": 0, "cost": Decimal(0), "input": 0, "reasoning": 0}
    )
    for run_id, (time_ms, provider, model, cost, usage) in CALLS:
        agent, tenant = RUNS[run_id]
        day = DAY1 if time_ms < MIDNIGHT else DAY2
        names = dict(agent=agent, tenant=tenant, provider=provider, model=model, day=day)
        for dimension, fields in DIMENSIONS.items():
            row = rows[(dimension, *(names[field] for field in fields))]
            row["calls"] += 1
            row["unpriced"] += cost is None
            row["cost"] += cost or 0
            row["input"] += usage.input_tokens
            row["reasoning"] += usage.reasoning_tokens
    return rows


async def test_cost_aggregates_are_exact(log: EmbeddedLog, tmp_path: Path) -> None:
    await append_runs(log)
    views = Views(log, tmp_path / "views")
    try:
        await views.refresh()
        expected = oracle()
        found = 0
        for dimension in DIMENSIONS:
            for row in views.costs(dimension):
                assert row.dimension == dimension
                names = (getattr(row, name) for name in DIMENSIONS[dimension])
                want = expected[(dimension, *names)]
                assert row.model_calls == want["calls"]
                assert row.unpriced_calls == want["unpriced"]
                assert Decimal(row.cost_usd) == want["cost"]
                assert row.tokens.input == want["input"]
                assert row.tokens.reasoning == want["reasoning"]
                found += 1
        assert found == len(expected)

        [acme] = views.costs("tenant", "acme")
        assert acme.cost_usd == "0.2516" and acme.unpriced_calls == 1
        assert acme.tokens == Tokens(
            input=118, output=59, cached_input=3, cache_write=1, reasoning=4
        )
        [bob_day2] = views.costs("agent-day", "bob")[1:]
        assert (bob_day2.day, bob_day2.cost_usd) == (DAY2, "0.00010001")
        assert [r.day for r in views.costs("tenant-day", "beta")] == [DAY2]
        [llama] = views.costs("model", "or")
        assert [getattr(llama, f) for f in ("model", "cost_usd", "model_calls")] == [
            "meta/llama-3", "0.00000001", 2,
        ]  # fmt: skip
        assert [r.cost_usd for r in views.costs("day")] == ["0.2515", "1.10010001"]
        assert views.costs("agent", "al") == [] and views.costs("agent", "nobody") == []
        with pytest.raises(ValueError, match="unknown cost dimension"):
            views.costs("planet")

        before = dict(views.items())
        await views.rebuild()  # refold from offset 0
        assert dict(views.items()) == before
    finally:
        views.close()


def day_of(time_ms: int) -> str:
    return DAY1 if time_ms < MIDNIGHT else DAY2


def naive_summary(
    agent: str | None, tenant: str | None, since: str | None, until: str | None
) -> dict[str, dict[str, tuple[int, int, Decimal]]]:
    """(runs, calls, cost) per group, summed from :data:`CALLS` one call at a time."""
    out: dict[str, dict[str, tuple[int, int, Decimal]]] = defaultdict(dict)

    def within(time_ms: int) -> bool:
        day = day_of(time_ms)
        return (since is None or day >= since) and (until is None or day <= until)

    def add(group: str, key: str, runs: int, calls: int, cost: Decimal) -> None:
        r, c, d = out[group].get(key, (0, 0, Decimal(0)))
        out[group][key] = (r + runs, c + calls, d + cost)

    first_with_model: dict[tuple[str, str], int] = {}
    for run_id, (time_ms, provider, model, _, _) in CALLS:
        first_with_model.setdefault((run_id, f"{provider}/{model}"), time_ms)
    for run_id, (run_agent, run_tenant) in RUNS.items():
        if agent not in (None, run_agent) or tenant not in (None, run_tenant):
            continue
        calls = [c for r, c in CALLS if r == run_id]
        started = int(within(calls[0][0] - 10))
        for group, key in (("total", "total"), ("agent", run_agent), ("tenant", run_tenant)):
            add(group, key, started, 0, Decimal(0))
        for time_ms, provider, model, cost, _ in calls:
            if within(time_ms):
                model_key = f"{provider}/{model}"
                for group, key in (
                    ("total", "total"),
                    ("agent", run_agent),
                    ("tenant", run_tenant),
                ):
                    add(group, key, 0, 1, cost or Decimal(0))
                first = first_with_model[(run_id, model_key)] == time_ms
                add("model", model_key, int(first), 1, cost or Decimal(0))
    return out


async def test_cost_summaries_read_from_the_cube_equal_a_naive_sum(
    log: EmbeddedLog, tmp_path: Path
) -> None:
    await append_runs(log)
    views = Views(log, tmp_path / "views")
    try:
        await views.refresh()
        windows = [(None, None), (DAY1, DAY1), (DAY2, DAY2), (DAY1, DAY2), (DAY2, None)]
        for agent, tenant, (since, until) in itertools.product(
            (None, "alice", "bob", "nobody"), (None, "acme", "beta"), windows
        ):
            got = views.cost_summary(agent=agent, tenant=tenant, since_day=since, until_day=until)
            want = naive_summary(agent, tenant, since, until)
            lines = {
                "total": [got.total],
                "agent": got.by_agent,
                "tenant": got.by_tenant,
                "model": got.by_model,
            }
            for group, found in lines.items():
                as_sums = {
                    line.key: (line.runs, line.model_calls, Decimal(line.cost_usd))
                    for line in found
                    if group == "total" or line.runs or line.model_calls
                }
                want[group] = {
                    k: v for k, v in want[group].items() if group == "total" or v[0] or v[1]
                }
                expected = want.get(group, {}) or (
                    {"total": (0, 0, Decimal(0))} if group == "total" else {}
                )
                assert as_sums == expected, (agent, tenant, since, until, group)
            costs = [Decimal(line.cost_usd) for line in got.by_agent]
            assert costs == sorted(costs, reverse=True)  # most expensive first
    finally:
        views.close()


async def test_refolding_records_already_folded_changes_nothing(
    log: EmbeddedLog, tmp_path: Path
) -> None:
    await append_runs(log)
    with ProjectionStore(tmp_path / "s") as store:
        await catch_up(log, store, query_projections(), chunk=3)
        before = dict(store.items())
        for partition in range(3):
            records = await log.read(EVENTS_TOPIC, partition, 0, max_records=1000)
            assert store.fold(records, query_projections()) == 0
        assert dict(store.items()) == before


async def ledger_scenario(log: EmbeddedLog) -> None:
    ledger = Ledger(log, LEDGER_TOPIC, writer="w1")
    acme, beta = "tenant:acme", "tenant:beta"
    await ledger.set_limit(acme, Decimal("1.00"), by="ops")
    assert (await ledger.reserve(acme, "q1", "r1", Decimal("0.40"))).granted
    assert (await ledger.reserve(acme, "q2", "r1", Decimal("0.50"))).granted
    assert not (await ledger.reserve(acme, "q3", "r2", Decimal("0.20"))).granted
    await ledger.settle(acme, "q1", Decimal("0.1"))
    assert (await ledger.reserve(acme, "q1", "r1", Decimal("0.40"))).granted  # sent again
    assert (await ledger.reserve(acme, "q2", "r1", Decimal("0.50"))).granted  # sent again
    assert not (await ledger.reserve(acme, "q4", "r2", None)).granted  # unpriced, limited
    assert (await ledger.reserve(beta, "b1", "r3", None)).granted
    assert (await ledger.reserve(beta, "b2", "r3", Decimal("5"))).granted
    await ledger.settle(beta, "b2", Decimal("4.5"))
    await ledger.set_limit(beta, Decimal("3"))
    assert not (await ledger.reserve(beta, "b3", "r3", Decimal("0.01"))).granted
    await ledger.set_limit(beta, None)
    await ledger.set_limit("agent:a/b", Decimal("2"), by="ops")


async def assert_agrees_with_ledger(log: EmbeddedLog, rows: list[BudgetRow]) -> None:
    ledger = Ledger(log, LEDGER_TOPIC)
    for row in rows:
        state = await ledger.state(row.key)
        assert (None if row.limit is None else Decimal(row.limit)) == state.limit
        assert Decimal(row.spent) == state.spent
        assert Decimal(row.committed) == state.committed
        assert {k: Decimal(v) for k, v in row.reservations.items()} == state.active
        assert row.in_flight == len(state.active)
        assert Decimal(row.reserved) == sum(state.active.values(), Decimal(0))


async def test_budgets_agree_with_the_ledger(log: EmbeddedLog, tmp_path: Path) -> None:
    await ledger_scenario(log)
    views = Views(log, tmp_path / "views")
    try:
        await views.refresh()
        rows = views.budgets()
        assert [r.key for r in rows] == ["agent:a/b", "tenant:acme", "tenant:beta"]
        await assert_agrees_with_ledger(log, rows)
        acme = views.budget("tenant:acme")
        assert acme is not None
        state = [getattr(acme, f) for f in ("limit", "spent", "reserved", "committed")]
        assert state == ["1", "0.1", "0.5", "0.6"]
        assert (acme.grants, acme.denials, acme.settles) == (4, 2, 1)
        assert acme.reservations == {"q2": "0.5"} and acme.limit_by == "ops"
        beta = views.budget("tenant:beta")
        assert beta is not None and beta.limit is None and beta.spent == "4.5"
        assert (beta.in_flight, beta.grants, beta.denials) == (1, 2, 1)
        assert views.budget("tenant:none") is None

        bad = LedgerRecord("tenant:bad", 5, "w9", Reserve("x", "r", "lots"))  # not a decimal
        await log.append(LEDGER_TOPIC, [OutRecord(b"tenant:bad", ledger_codec().encode(bad))])
        await views.refresh()
        bad_row = views.budget("tenant:bad")
        assert bad_row is not None
        assert (bad_row.errors, bad_row.grants, bad_row.updated_ms) == (1, 0, 5)
    finally:
        views.close()


OPS = st.tuples(st.integers(0, 5), st.sampled_from(["call", "free", "ledger"]), st.integers(0, 99))


def build_stream(ops: list[tuple[int, str, int]]) -> list[tuple[str, OutRecord]]:
    """Events of six runs (two agents, two tenants, two days) and ledger records."""
    seqs: dict[int, int] = {}
    out: list[tuple[str, OutRecord]] = []
    for i, kind, k in ops:
        run_id, time_ms = f"run-{i}", MIDNIGHT + (k - 50) * 1000
        if kind == "ledger":
            key = f"tenant:t{i % 2}"
            usd = f"0.{k}" if k % 4 else "unpriced"
            payload: Reserve | Settle | SetLimit = Reserve(f"q{k % 5}", run_id, usd)
            if k % 3 == 0:
                payload = Settle(f"q{k % 5}", f"0.{k}") if k % 2 else SetLimit(f"{k % 7}"[: k % 5])
            entry = LedgerRecord(key, time_ms, "w", payload)
            out.append((LEDGER_TOPIC, OutRecord(key.encode(), ledger_codec().encode(entry))))
            continue
        if i not in seqs:
            started = RunStarted(["alice", "bob"][i % 2], "{}", tenant=["acme", "beta"][i // 3])
            out.append((EVENTS_TOPIC, event(run_id, 0, time_ms, started)))
            seqs[i] = 1
        cost = Decimal(k) / 10**6 if kind == "call" else None
        done = ModelCallCompleted(
            seqs[i], "p", f"m{k % 3}", "id", "m", "stop", "{}", Usage(k, 1, 0, 0, k % 2), 1, cost
        )
        out.append((EVENTS_TOPIC, event(run_id, seqs[i], time_ms, done)))
        seqs[i] += 1
    return out


async def fold_in_steps(
    root: Path, stream: list[tuple[str, OutRecord]], cuts: list[int], chunk: int
) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    log = await open_log(root / "log")
    try:
        with ProjectionStore(root / "incremental") as store:
            for lo, hi in itertools.pairwise([0, *sorted(set(cuts)), len(stream)]):
                for topic in (EVENTS_TOPIC, LEDGER_TOPIC):
                    part = [r for tp, r in stream[lo:hi] if tp == topic]
                    if part:
                        await log.append(topic, part)
                await catch_up(log, store, query_projections(), chunk=chunk)
            incremental = dict(store.items())
        views = Views(log, root / "fresh")
        try:
            await views.refresh()
            await assert_agrees_with_ledger(log, views.budgets())
            fresh = {k: v for k, v in views.items() if k != FORMAT_KEY}
            return incremental, fresh
        finally:
            views.close()
    finally:
        await log.close()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(OPS, min_size=1, max_size=40),
    cut_fractions=st.lists(st.floats(0, 1), max_size=5),
    chunk=st.integers(1, 7),
)
def test_incremental_folds_equal_a_fresh_fold(
    ops: list[tuple[int, str, int]], cut_fractions: list[float], chunk: int
) -> None:
    stream = build_stream(ops)
    cuts = [int(f * len(stream)) for f in cut_fractions]
    with tempfile.TemporaryDirectory() as tmp:
        incremental, fresh = asyncio.run(fold_in_steps(Path(tmp), stream, cuts, chunk))
    assert incremental == fresh
    assert any(key.startswith(b"cost/") or key.startswith(b"budget/") for key in fresh)
