"""What a run waits for, read from its steps: open gates, budget waits, in-doubt calls.

A gate is pending while its step (kind ``gate``, or kind ``policy`` for a call a policy
suspended) is ``open``; the runs view says ``suspended`` while any of these waits.
"""

from __future__ import annotations

from wakeline.projections.store import JsonObject


def pending_gates(steps: list[JsonObject]) -> list[JsonObject]:
    """The open gates and suspended policy denials, in seq order."""
    out: list[JsonObject] = []
    for step in steps:
        if step["status"] != "open" or step["kind"] not in ("gate", "policy"):
            continue
        gate = step["kind"] == "gate"
        out.append(
            {
                "gate": step["name"],
                "seq": step["seq"],
                "kind": step["kind"],
                "requested_ms": step.get("requested_ms"),
                "payload": step.get("request") if gate else None,
                "timeout_ms": step.get("timeout_ms") if gate else None,
                "target": None if gate else step.get("target"),
                "reason": None if gate else step.get("reason"),
            }
        )
    return out


def find_gate(steps: list[JsonObject], gate: str) -> JsonObject | None:
    """The first pending gate named ``gate`` (or whose seq is ``gate``), as the workers pick."""
    for pending in pending_gates(steps):
        if pending["gate"] == gate or str(pending["seq"]) == gate:
            return pending
    return None


def waits_on_budget(steps: list[JsonObject], metric: str) -> bool:
    """Whether the run waits on its own (not its tenant's) ``metric`` limit."""
    return any(
        s["kind"] == "budget"
        and s["status"] == "open"
        and s["name"] == metric
        and s.get("scope", "run") == "run"
        for s in steps
    )


def in_doubt(steps: list[JsonObject], seq: int) -> bool:
    return any(s["seq"] == seq and s["status"] == "in_doubt" for s in steps)
