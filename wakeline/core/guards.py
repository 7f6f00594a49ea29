"""Governance and timers as a run's agent code meets them: policies and the run budget checked
before a call's request event is produced, and durable timers.  Shared by :class:`Context`
(tools, sleeps) and :class:`~wakeline.core.model_calls.ModelCalls`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from wakeline.core.governance import CallInfo, run_policies
from wakeline.core.governance import text as money_text
from wakeline.core.port import ContextPort
from wakeline.schemas.events import (
    BudgetExceeded,
    BudgetRaised,
    GateResolved,
    PolicyDenied,
    TimerScheduled,
)


def call_info(
    core: ContextPort,
    agent: str,
    kind: Literal["model", "tool"],
    target: str,
    provider: str,
    request: Any,
) -> CallInfo:
    return CallInfo(kind, core.run_id, agent, core.tenant, target, provider, request)


async def check_policies(core: ContextPort, info: CallInfo) -> None:
    """Run the app's policies on a call: a denial fails the run, or (``suspend``) waits for a
    person to approve it (then the call goes ahead) or reject it (the run fails)."""
    denial = run_policies(list(core.app.policies.items()), info)
    if denial is None:
        return
    name, decision = denial
    kind, target = info.kind, info.target
    event = core.emit(PolicyDenied(kind, target, name, decision.reason, decision.suspend))
    if not decision.suspend:
        raise core.fail_run("PolicyDenied", f"{name}: {decision.reason}")
    result = await core.wait(event.seq)
    assert isinstance(result, GateResolved)
    if not result.approved:
        why = f"{name}: {decision.reason}; rejected by {result.by or 'someone'}"
        raise core.fail_run("PolicyDenied", f"{why}: {result.reason}" if result.reason else why)


def budget_breach(
    core: ContextPort, target: str, reservation: dict[str, Decimal | None], elapsed_ms: int
) -> BudgetExceeded | None:
    """The run-budget limit a call reserving ``reservation`` would break, as its event."""
    over = core.budget.check(reservation, elapsed_ms)
    if over is None:
        return None
    return BudgetExceeded(
        "model",
        target,
        "run",
        over.metric,
        str(over.limit),
        str(over.spent),
        money_text(over.reservation),
    )


async def check_budget(
    core: ContextPort, target: str, reservation: dict[str, Decimal | None]
) -> None:
    """Wait (a durable gate) until the run's budget covers the call."""
    elapsed = core.time_ms - core.started_ms
    while (exceeded := budget_breach(core, target, reservation, elapsed)) is not None:
        await wait_for_raise(core, exceeded)


async def wait_for_raise(core: ContextPort, exceeded: BudgetExceeded) -> None:
    event = core.emit(exceeded)
    result = await core.wait(event.seq)
    assert isinstance(result, BudgetRaised)


async def timer(core: ContextPort, seconds: float, purpose: str) -> None:
    """A durable timer: its fire time is journaled, so it survives crashes and restarts."""
    ms = max(0, round(seconds * 1000))
    event = core.emit(TimerScheduled(core.time_ms + ms, ms, purpose))
    await core.wait(event.seq)
