"""Commands from people, turned into the result events of the open steps they name."""

from __future__ import annotations

from collections.abc import Mapping

from wakeline.core.activation import DecideGate, RaiseLimit
from wakeline.schemas.events import (
    BudgetExceeded,
    BudgetRaised,
    Event,
    GateOpened,
    GateResolved,
    PolicyDenied,
)


def gate_decision(run_id: str, open: Mapping[int, Event], command: DecideGate) -> GateResolved:
    """The decision on the open gate named (by name, policy name or seq) in ``command``."""
    for seq, event in sorted(open.items()):
        payload, gate = event.payload, command.gate
        named = isinstance(payload, GateOpened) and payload.name == gate
        named = named or (isinstance(payload, PolicyDenied) and payload.policy == gate)
        if named or (str(seq) == gate and isinstance(payload, GateOpened | PolicyDenied)):
            return GateResolved(seq, command.approved, command.by, command.reason)
    raise LookupError(f"run {run_id} has no open gate {command.gate!r}")


def limit_raised(run_id: str, open: Mapping[int, Event], command: RaiseLimit) -> BudgetRaised:
    """The raise of the limit an open budget wait of ``command``'s metric and scope is on."""
    wanted = (command.metric, command.scope)
    for seq, event in sorted(open.items()):
        p = event.payload
        if isinstance(p, BudgetExceeded) and (p.metric, p.scope) == wanted:
            return BudgetRaised(seq, command.metric, command.limit, command.by, command.scope)
    raise LookupError(
        f"run {run_id} is not waiting on its {command.scope} {command.metric!r} budget"
    )
