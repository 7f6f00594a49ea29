"""Hypothesis over delivery order x crash point, in always-replay mode.

A run with parallel model calls, a tool, a step, a timer and recorded values is driven with
its effects' results delivered in any order, and with the worker dying at any point (the
results in flight are lost; a fresh core recovers from the journal).  Whatever happens it ends
as an uncrashed run does: the same output and cost, a dense journal, every model attempt closed
exactly once, no call sent again after its result was journaled, and a byte-identical replay.
Every activation is also replayed from scratch (``always_replay``) and must match.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wakeline import App, Context, jsonutil
from wakeline.actors.effects import run_effect
from wakeline.core.activation import Effect
from wakeline.providers.mock import MockModel
from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    Event,
    ModelCallCompleted,
    ModelCallInterrupted,
    ModelCallRequested,
    RunCompleted,
    RunStarted,
)
from wakeline.testing import CoreDriver


def make_app() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())

    @app.tool
    def lookup(term: str) -> str:
        return f"{term}!"

    @app.agent
    async def mixed(ctx: Context, topic: str) -> dict[str, Any]:
        facts = await asyncio.gather(*(ctx.llm(f"fact {i} on {topic}") for i in range(3)))
        looked, stepped, _ = await asyncio.gather(
            ctx.tool("lookup", term=topic),
            ctx.step("shout", str.upper, topic),
            ctx.sleep(0),
        )
        when = ctx.now()
        final = await ctx.llm(" / ".join(f.text for f in facts) + looked + stepped)
        return {"final": final.text, "when": when.isoformat(), "id": str(ctx.uuid())}

    return app


Choice = tuple[int, bool]
"""Which pending effect runs next, and whether the worker dies right after it ran (its
result, and every other one in flight, is lost)."""


async def simulate(choices: list[Choice]) -> tuple[CoreDriver, list[int]]:
    app = make_app()
    core = CoreDriver("run-h", app, always_replay=True)
    pending = list(core.start(RunStarted("mixed", jsonutil.dumps("otters"))).effects)
    sent: list[int] = []  # the seq of every model attempt handed to the provider
    script = iter(choices)
    while pending:
        index, dies = next(script, (0, False))
        effect = pending.pop(index % len(pending))
        _check_not_already_answered(core.journal, effect)
        if isinstance(effect.request.payload, ModelCallRequested):
            sent.append(effect.seq)
        result = await run_effect(app, effect, now_ms=lambda: 2**62)  # timers are due
        if dies:
            core = core.crash(writer=f"w{len(core.journal)}")
            pending = list(core.recover().effects)
            continue
        pending += core.deliver(result).effects
    return core, sent


def _check_not_already_answered(journal: list[Event], effect: Effect) -> None:
    answered = {getattr(e.payload, "step", None) for e in journal if e.seq > effect.seq}
    assert effect.seq not in answered, f"seq {effect.seq} sent again after its result"


def reference() -> CoreDriver:
    core, _ = asyncio.run(simulate([]))
    return core


def completed_cost(journal: list[Event]) -> tuple[int, Decimal]:
    done = [e.payload for e in journal if isinstance(e.payload, ModelCallCompleted)]
    return len(done), sum((p.cost_usd or Decimal(0) for p in done), Decimal(0))


REFERENCE = reference()


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.booleans()), max_size=24))
def test_any_order_and_any_crash_point_end_like_an_uncrashed_run(choices: list[Choice]) -> None:
    core, sent = asyncio.run(simulate(choices))
    journal = core.journal
    assert [e.seq for e in journal] == list(range(len(journal)))
    terminal = core.terminal
    assert terminal is not None and isinstance(terminal.payload, RunCompleted)
    assert REFERENCE.terminal is not None
    assert (
        jsonutil.loads(terminal.payload.output)["final"]
        == jsonutil.loads(
            REFERENCE.terminal.payload.output  # type: ignore[union-attr]
        )["final"]
    )
    assert completed_cost(journal) == completed_cost(REFERENCE.journal)
    attempts = [e.seq for e in journal if isinstance(e.payload, ModelCallRequested)]
    closed = [
        e.payload.step
        for e in journal
        if isinstance(e.payload, ModelCallCompleted | ModelCallInterrupted)
    ]
    assert sorted(closed) == attempts  # each attempt closed exactly once
    assert set(sent) <= set(attempts)
    raw = [event_codec().encode(e) for e in journal]
    report = replay_journal(make_app(), "run-h", raw)
    assert report.identical, report
