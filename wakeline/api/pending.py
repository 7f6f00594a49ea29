"""What a run waits for, read from its steps: open gates, budget waits, in-doubt calls.

A gate is pending while its step (kind ``gate``, or kind ``policy`` for a call a policy
suspended) is ``open``; the runs view says ``suspended`` while any of these waits.
"""

from __future__ import annotations

from collections.abc import Sequence

from wakeline.api.models import PendingGate
from wakeline.projections.rows import StepRow


def pending_gates(steps: Sequence[StepRow]) -> list[PendingGate]:
    """The open gates and suspended policy denials, in seq order."""
    out: list[PendingGate] = []
    for step in steps:
        if step.status != "open" or (step.kind != "gate" and step.kind != "policy"):
            continue
        gate = step.kind == "gate"
        out.append(
            PendingGate(
                gate=step.name,
                seq=step.seq,
                kind=step.kind,
                requested_ms=step.requested_ms,
                payload=step.request if gate else None,
                timeout_ms=step.timeout_ms if gate else None,
                target=None if gate else step.target,
                reason=None if gate else step.reason,
            )
        )
    return out


def find_gate(steps: Sequence[StepRow], gate: str) -> PendingGate | None:
    """The first pending gate named ``gate`` (or whose seq is ``gate``), as the workers pick."""
    for pending in pending_gates(steps):
        if pending.gate == gate or str(pending.seq) == gate:
            return pending
    return None


def waits_on_budget(steps: Sequence[StepRow], metric: str) -> bool:
    """Whether the run waits on its own (not its tenant's) ``metric`` limit."""
    return any(
        s.kind == "budget"
        and s.status == "open"
        and s.name == metric
        and (s.scope or "run") == "run"
        for s in steps
    )


def in_doubt(steps: Sequence[StepRow], seq: int) -> bool:
    return any(s.seq == seq and s.status == "in_doubt" for s in steps)
