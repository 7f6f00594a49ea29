"""Budgets bound what the provider can bill: every dispatch of a model call that may reach the
provider is an attempt that counts, in the deterministic core (no log, no worker).

A crash after a call was sent leaves it open in the journal; recovery closes it with
``ModelCallInterrupted`` and ``ctx.llm`` sends it again as a new attempt only if the run's
budget covers the interrupted attempt's worst case *and* the new one's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wakeline import jsonutil
from wakeline.actors.effects import run_effect
from wakeline.core.activation import Completion, Effect, RaiseLimit, WaitingOnPeople
from wakeline.core.app import App
from wakeline.core.governance import reservation_for
from wakeline.core.model import ModelRequest
from wakeline.providers.mock import MockModel
from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    Budget,
    BudgetExceeded,
    Event,
    ModelCallCompleted,
    ModelCallInterrupted,
    ModelCallRequested,
    RunCompleted,
    RunStarted,
)
from wakeline.testing import CoreDriver, FakeClock

MAX_TOKENS = 40


def make_app() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())

    @app.agent
    async def chain(ctx: Any, n: int) -> int:
        for i in range(n):
            await ctx.llm(f"question {i}", max_tokens=MAX_TOKENS)
        return n

    return app


def worst(i: int) -> dict[str, Decimal | None]:
    request = ModelRequest(
        "mock-1", ({"role": "user", "content": f"question {i}"},), max_tokens=MAX_TOKENS
    )
    return reservation_for(make_app().prices, "mock", request)


def begin(app: App, n: int, budget: Budget) -> tuple[CoreDriver, Completion]:
    core = CoreDriver("run-a", app, clock=FakeClock(100), always_replay=True)
    return core, core.start(RunStarted("chain", jsonutil.dumps(n), budget=budget))


def crash(core: CoreDriver) -> tuple[CoreDriver, Completion]:
    """The worker dies; a fresh one recovers the run from its journal."""
    fresh = core.crash(writer="w2")
    return fresh, fresh.recover()


def model_calls(effects: Sequence[Effect]) -> list[Effect]:
    return [e for e in effects if isinstance(e.request.payload, ModelCallRequested)]


def waiting_on_people(core: CoreDriver) -> bool:
    return isinstance(core.status, WaitingOnPeople)


def spent(core: CoreDriver) -> Mapping[str, Decimal]:
    assert core.last is not None
    return core.last.spent


def types(events: Sequence[Event]) -> list[str]:
    return [e.type for e in events]


def test_a_one_call_budget_never_sends_an_interrupted_call_again() -> None:
    app = make_app()
    core, first = begin(app, 1, Budget(model_calls=1))
    assert [e.seq for e in model_calls(first.effects)] == [1]  # sent, then the worker died
    core, out = crash(core)
    assert types(out.events) == ["ModelCallInterrupted", "BudgetExceeded"]
    assert model_calls(out.effects) == []  # nothing reaches the provider
    exceeded = out.events[1].payload
    assert isinstance(exceeded, BudgetExceeded)
    assert (exceeded.metric, exceeded.limit, exceeded.spent) == ("model_calls", "1", "1")
    assert waiting_on_people(core)
    # on every later recovery too: the decision is the journal's
    again, out = crash(core)
    assert out.events == () and model_calls(out.effects) == [] and waiting_on_people(again)
    raised = again.activate(RaiseLimit("model_calls", "2", "ops"))
    [resent] = model_calls(raised.effects)
    assert isinstance(resent.request.payload, ModelCallRequested)
    assert resent.request.payload.attempt == 2 and resent.interrupted == (1,)


async def test_a_two_call_budget_resends_once_and_completes() -> None:
    app = make_app()
    core, _ = begin(app, 1, Budget(model_calls=2))
    core, out = crash(core)
    [resent] = model_calls(out.effects)
    assert types(out.events) == ["ModelCallInterrupted", "ModelCallRequested"]
    result = await run_effect(app, resent, now_ms=lambda: 0)
    done = core.deliver(result)
    assert core.terminal is not None and isinstance(core.terminal.payload, RunCompleted)
    assert types(done.events) == ["ModelCallCompleted", "RunCompleted"]
    # both attempts counted: the interrupted one at its worst case
    assert spent(core)["model_calls"] == 2
    completed = done.events[0].payload
    assert isinstance(completed, ModelCallCompleted) and completed.cost_usd is not None
    assert spent(core)["usd"] == completed.cost_usd + worst(0)["usd"]  # type: ignore[operator]
    # a second crash of the re-sent attempt would have found the budget spent
    core2, _ = begin(app, 1, Budget(model_calls=2))
    core2, _ = crash(core2)
    core2, out = crash(core2)
    assert types(out.events) == ["ModelCallInterrupted", "BudgetExceeded"]


def test_dollar_limits_keep_the_interrupted_worst_case_reserved() -> None:
    app = make_app()
    w = worst(0)["usd"]
    assert w is not None and w > 0
    core, _ = begin(app, 1, Budget(usd=str(w * 2 - Decimal("1e-12"))))
    core, out = crash(core)
    assert types(out.events) == ["ModelCallInterrupted", "BudgetExceeded"]
    exceeded = out.events[1].payload
    assert isinstance(exceeded, BudgetExceeded) and exceeded.metric == "usd"
    assert Decimal(exceeded.spent) == w and Decimal(exceeded.reservation) == w

    core, _ = begin(app, 1, Budget(usd=str(w * 2)))
    core, out = crash(core)
    assert types(out.events) == ["ModelCallInterrupted", "ModelCallRequested"]


async def simulate(n: int, budget: Budget, crashes: list[bool]) -> tuple[CoreDriver, set[int]]:
    """Drive a run, crashing the worker right after it sent a model call whenever the next
    entry of ``crashes`` says so.  Returns the final core and the seqs of every attempt that
    was handed to the provider (a crash loses none of them: they may all have been billed)."""
    app = make_app()
    core, out = begin(app, n, budget)
    sent: set[int] = set()
    schedule = iter(crashes)
    pending = model_calls(out.effects)
    while pending:
        sent |= {e.seq for e in pending}
        if next(schedule, False):
            core, out = crash(core)
            pending = model_calls(out.effects)
            continue
        effect = pending.pop(0)
        result = await run_effect(app, effect, now_ms=lambda: 0)
        pending += model_calls(core.deliver(result).effects)
    return core, sent


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3),
    calls=st.integers(1, 6),
    token_slack=st.integers(0, 3),
    crashes=st.lists(st.booleans(), max_size=8),
)
def test_attempts_that_may_reach_the_provider_never_exceed_the_budget(
    n: int, calls: int, token_slack: int, crashes: list[bool]
) -> None:
    per_call = worst(0)["tokens"]
    assert per_call is not None and all(worst(i)["tokens"] == per_call for i in range(n))
    tokens = int(per_call) * (calls + token_slack) // 2 + 1
    budget = Budget(model_calls=calls, tokens=tokens)
    core, sent = asyncio.run(simulate(n, budget, crashes))
    payloads = [e.payload for e in core.journal]
    # the bound: what the provider can bill -- every attempt handed to it, an interrupted one
    # at its worst case, a completed one at its usage -- fits the budget
    assert len(sent) <= calls
    used = sum(
        p.usage.input_tokens + p.usage.output_tokens
        for p in payloads
        if isinstance(p, ModelCallCompleted)
    )
    lost = sum(isinstance(p, ModelCallInterrupted) for p in payloads)
    assert used + lost * per_call <= tokens
    attempts = [p for p in payloads if isinstance(p, ModelCallRequested)]
    assert {e.seq for e in core.journal if isinstance(e.payload, ModelCallRequested)} == sent
    interrupted = sum(isinstance(p, ModelCallInterrupted) for p in payloads)
    completed = sum(isinstance(p, ModelCallCompleted) for p in payloads)
    assert len(attempts) == interrupted + completed  # each attempt closed exactly once
    if core.terminal is not None:
        assert isinstance(core.terminal.payload, RunCompleted) and completed == n
        assert spent(core)["model_calls"] == len(attempts)
    else:  # it waits for a raise of the limit its next attempt would break
        assert waiting_on_people(core)
        assert isinstance(core.journal[-1].payload, BudgetExceeded)
        assert spent(core)["model_calls"] <= len(attempts)
    # the journal, interruptions included, replays byte for byte; replay decides the same
    raw = [event_codec().encode(e) for e in core.journal]
    report = replay_journal(make_app(), core.run_id, raw)
    assert report.identical, report
    out = core.crash(writer="replayer", app=make_app()).recover()
    assert out.events == () and out.spent == spent(core)
