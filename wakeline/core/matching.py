"""How a produced event is matched against the journal on replay, and described in drift
reports."""

from __future__ import annotations

from typing import Any

from wakeline.schemas.events import (
    BudgetExceeded,
    EventPayload,
    GateOpened,
    ModelCallInterrupted,
    ModelCallRequested,
    PolicyDenied,
    RunCompleted,
    RunFailed,
    StepRequested,
    TimerScheduled,
    ToolCallRequested,
    ValueRecorded,
)


def describe(payload: EventPayload) -> str:
    """A short human description of an event payload, used in drift reports."""
    match payload:
        case ModelCallRequested(provider=p, model=m, request_digest=d):
            return f"model call {p}/{m} (request {d[:12]})"
        case ToolCallRequested(tool=t, args_digest=d):
            return f"tool {t} (args {d[:12]})"
        case StepRequested(name=n):
            return f"step {n!r}"
        case ValueRecorded(kind=k):
            return f"{k.lower()} read"
        case TimerScheduled(duration_ms=ms, purpose=p):
            return f"timer {ms} ms ({p})"
        case GateOpened(name=n):
            return f"approval gate {n!r}"
        case PolicyDenied(policy=p, target=t):
            return f"policy {p} denying {t}"
        case BudgetExceeded(metric=m, target=t):
            return f"budget {m} exceeded by {t}"
        case ModelCallInterrupted(step=s, attempt=a):
            return f"interrupted model call at seq {s} (attempt {a})"
        case _:
            return type(payload).__name__


def identity(payload: EventPayload) -> tuple[Any, ...]:
    """The part of a produced event that must match the journal on replay."""
    match payload:
        case ModelCallRequested(provider=p, model=m, request_digest=d, attempt=a):
            return ("model", p, m, d, a)
        case ToolCallRequested(tool=t, args_digest=d):
            return ("tool", t, d)
        case StepRequested(name=n):
            return ("step", n)
        case ValueRecorded(kind=k):
            return ("value", k)
        case TimerScheduled(duration_ms=ms, purpose=p):
            return ("timer", ms, p)
        case GateOpened(name=n, payload=body, timeout_ms=t):
            return ("gate", n, body, t)
        case PolicyDenied(kind=k, target=t, policy=p, suspend=w):
            return ("denied", k, t, p, w)
        case BudgetExceeded(kind=k, target=t, scope=sc, metric=m):
            return ("budget", k, t, sc, m)
        case RunCompleted(output=o):
            return ("completed", o)
        case RunFailed(error_type=t, message=m):
            return ("failed", t, m)
        case _:
            return (type(payload).__name__,)
