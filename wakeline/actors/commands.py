"""Commands to a run: the checks made before one reaches a run, and the core call it becomes.

Both are pure: the worker fixes the time and its identity when it applies a command, so the
events a command produces depend only on the command and the run's journal.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from wakeline import jsonutil
from wakeline.core.governance import METRICS
from wakeline.core.run_core import RunCore, Transition
from wakeline.schemas.commands import (
    CancelRun,
    Command,
    RaiseBudget,
    ResolveGate,
    ResolveInDoubt,
)


def check_command(payload: object) -> str | None:
    """What is wrong with a command's arguments, before it reaches a run's core."""
    if isinstance(payload, RaiseBudget):
        if payload.metric not in METRICS:
            return f"unknown budget metric {payload.metric!r} (one of {', '.join(METRICS)})"
        try:
            limit = Decimal(payload.limit)
        except InvalidOperation:
            return f"budget limit {payload.limit!r} is not a number"
        if not limit.is_finite() or limit < 0:
            return f"budget limit {payload.limit!r} must be a finite number >= 0"
    if isinstance(payload, ResolveInDoubt) and payload.resolution == "SUPPLY":
        try:
            jsonutil.loads(payload.result)
        except ValueError:
            return "a supplied result must be JSON"
    return None


def command_fn(command: Command, now_ms: int, worker: str) -> Callable[[RunCore], Transition]:
    """The core call that applies a command to a live run, at ``now_ms`` on ``worker``."""
    by = command.issuer
    match command.payload:
        case CancelRun(reason=reason):
            return lambda core: core.cancel(reason, by, now_ms, worker)
        case ResolveGate(gate=gate, approved=ok, reason=reason):
            return lambda core: core.resolve_gate(gate, ok, by, reason, now_ms, worker)
        case RaiseBudget(metric=metric, limit=limit):
            return lambda core: core.raise_budget(metric, limit, by, now_ms, worker)
        case ResolveInDoubt(step=step, resolution=resolution, result=result):
            return lambda core: core.resolve_in_doubt(step, resolution, result, by, now_ms, worker)
    raise TypeError(f"not a run command: {command.type}")
