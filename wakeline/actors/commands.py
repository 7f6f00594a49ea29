"""Commands to a run: the checks made before one reaches a run, and the core call it becomes.

Both are pure: the worker fixes the time and its identity when it applies a command, so the
events a command produces depend only on the command and the run's journal.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from wakeline import jsonutil
from wakeline.core import activation as act
from wakeline.core.governance import METRICS
from wakeline.schemas.commands import (
    CancelRun,
    Command,
    RaiseBudget,
    ResolveGate,
    ResolveInDoubt,
    UpgradeRun,
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
    if isinstance(payload, UpgradeRun) and not payload.to_version:
        return "an upgrade needs the version to move the run to"
    if isinstance(payload, ResolveInDoubt) and payload.resolution == "SUPPLY":
        try:
            jsonutil.loads(payload.result)
        except ValueError:
            return "a supplied result must be JSON"
    return None


def core_input(command: Command) -> act.Command:
    """The core input a command to a live run becomes."""
    by = command.issuer
    match command.payload:
        case CancelRun(reason=reason):
            return act.Cancel(reason, by)
        case ResolveGate(gate=gate, approved=ok, reason=reason):
            return act.DecideGate(gate, ok, by, reason)
        case RaiseBudget(metric=metric, limit=limit):
            return act.RaiseLimit(metric, limit, by)
        case ResolveInDoubt(step=step, resolution=resolution, result=result):
            return act.DecideInDoubt(step, resolution, result, by)
    raise TypeError(f"not a run command: {command.type}")
