"""The step kinds: one row per kind of step a run can open.

A *step* is opened by a request event (its ``seq`` is the step's id) and closed by one of its
result events.  Each row says what opens and closes the step, what must match the journal on
replay (its identity), how it is described in drift reports and what it waits for: the
driver (it runs the call), a timer, or a person (a command).  The core, the driver's effects,
telemetry and the projections read this table, so a new step kind is one row plus one
handler.  Events that are produced by agent code but open no step (recorded values, terminal
events) have identities here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from wakeline.schemas.events import (
    BudgetExceeded,
    BudgetRaised,
    EventPayload,
    GateOpened,
    GateResolved,
    InDoubtResolved,
    ModelCallCompleted,
    ModelCallDenied,
    ModelCallFailed,
    ModelCallInterrupted,
    ModelCallRequested,
    ModelRouteFallback,
    PatchApplied,
    PolicyDenied,
    RunCompleted,
    RunFailed,
    RunUpgraded,
    StepCompleted,
    StepFailed,
    StepRequested,
    TimerFired,
    TimerScheduled,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallInDoubt,
    ToolCallRequested,
    ValueRecorded,
)

Waits = Literal["driver", "timer", "person"]


@dataclass(frozen=True, slots=True)
class StepKind:
    name: str
    """``model`` | ``tool`` | ``step`` | ``timer`` | ``gate`` | ``policy`` | ``budget``."""
    opens: type
    closes: tuple[type, ...]
    identity: Callable[[Any], tuple[Any, ...]]
    describe: Callable[[Any], str]
    waits_for: Callable[[Any], Waits]
    label: Callable[[Any], str]
    """The step's name in listings (the model, the tool, the gate, ...)."""
    shown: Callable[[Any], dict[str, Any]]
    """The request's fields a step's row shows besides its kind, name and status."""


def _gate_waits(payload: GateOpened) -> Waits:
    return "person" if payload.timeout_ms is None else "timer"


STEP_KINDS: tuple[StepKind, ...] = (
    StepKind(
        "model",
        ModelCallRequested,
        (ModelCallCompleted, ModelCallFailed, ModelCallDenied, ModelCallInterrupted),
        lambda p: ("model", p.provider, p.model, p.request_digest, p.attempt),
        lambda p: f"model call {p.provider}/{p.model} (request {p.request_digest[:12]})",
        lambda p: "driver",
        label=lambda p: p.model,
        shown=lambda p: {
            "provider": p.provider,
            "model": p.model,
            "route": p.route,
            "request": p.request,
            "stream": p.stream,
            "attempt": p.attempt,
            **({"extends": {"seq": p.base_seq, "reply": p.base_reply}} if p.base_seq >= 0 else {}),
        },
    ),
    StepKind(
        "tool",
        ToolCallRequested,
        (ToolCallCompleted, ToolCallFailed),
        lambda p: ("tool", p.tool, p.args_digest),
        lambda p: f"tool {p.tool} (args {p.args_digest[:12]})",
        lambda p: "driver",
        label=lambda p: p.tool,
        shown=lambda p: {
            "request": p.args,
            "idempotency_key": p.idempotency_key,
            "idempotent": p.idempotent,
        },
    ),
    StepKind(
        "step",
        StepRequested,
        (StepCompleted, StepFailed),
        lambda p: ("step", p.name),
        lambda p: f"step {p.name!r}",
        lambda p: "driver",
        label=lambda p: p.name,
        shown=lambda p: {},
    ),
    StepKind(
        "timer",
        TimerScheduled,
        (TimerFired,),
        lambda p: ("timer", p.duration_ms, p.purpose),
        lambda p: f"timer {p.duration_ms} ms ({p.purpose})",
        lambda p: "timer",
        label=lambda p: p.purpose,
        shown=lambda p: {"fire_at_ms": p.fire_at_ms, "duration_ms": p.duration_ms},
    ),
    StepKind(
        "gate",
        GateOpened,
        (GateResolved,),
        lambda p: ("gate", p.name, p.payload, p.timeout_ms),
        lambda p: f"approval gate {p.name!r}",
        _gate_waits,
        label=lambda p: p.name,
        shown=lambda p: {"request": p.payload, "timeout_ms": p.timeout_ms},
    ),
    StepKind(
        "policy",  # only a suspending denial opens a step (see opens_step)
        PolicyDenied,
        (GateResolved,),
        lambda p: ("denied", p.kind, p.target, p.policy, p.suspend),
        lambda p: f"policy {p.policy} denying {p.target}",
        lambda p: "person",
        label=lambda p: p.policy,
        shown=lambda p: {
            "target": p.target,
            "reason": p.reason,
            "status": "open" if p.suspend else "denied",
        },
    ),
    StepKind(
        "budget",
        BudgetExceeded,
        (BudgetRaised,),
        lambda p: ("budget", p.kind, p.target, p.scope, p.metric),
        lambda p: f"budget {p.metric} exceeded by {p.target}",
        lambda p: "person",
        label=lambda p: p.metric,
        shown=lambda p: {
            "target": p.target,
            "scope": p.scope,
            "limit": p.limit,
            "spent": p.spent,
            "reservation": p.reservation,
        },
    ),
)

BY_REQUEST: dict[type, StepKind] = {k.opens: k for k in STEP_KINDS}
BY_RESULT: dict[type, StepKind] = {
    t: k for k in STEP_KINDS for t in k.closes if k.name != "policy"
}  # GateResolved closes gates and suspended denials alike; its row is the gate's

REQUEST_TYPES = tuple(k.opens for k in STEP_KINDS)
Result = (
    ModelCallCompleted
    | ModelCallFailed
    | ModelCallDenied
    | ModelCallInterrupted
    | ToolCallCompleted
    | ToolCallFailed
    | StepCompleted
    | StepFailed
    | TimerFired
    | GateResolved
    | BudgetRaised
)
"""A result event: it closes a step (its ``step`` is the seq of the event that opened it)."""
RESULT_TYPES: tuple[type[Result], ...] = tuple(
    dict.fromkeys(t for k in STEP_KINDS for t in k.closes)
)
ANNOTATION_TYPES = (ToolCallInDoubt, InDoubtResolved, RunUpgraded)
"""Events the driver writes about an open step or a waiting run; they neither open nor close
a step."""

_OTHER_IDENTITY: dict[type, Callable[[Any], tuple[Any, ...]]] = {
    ValueRecorded: lambda p: ("value", p.kind),
    RunCompleted: lambda p: ("completed", p.output),
    RunFailed: lambda p: ("failed", p.error_type, p.message),
    ModelRouteFallback: lambda p: ("route-fallback", p.route, p.provider, p.model, p.reason),
    PatchApplied: lambda p: ("patch", p.patch),
}
_OTHER_DESCRIPTION: dict[type, Callable[[Any], str]] = {
    ValueRecorded: lambda p: f"{p.kind.lower()} read",
    ModelCallInterrupted: lambda p: f"interrupted model call at seq {p.step} (attempt {p.attempt})",
    ModelRouteFallback: lambda p: f"route {p.route} leaving {p.provider}/{p.model} ({p.reason})",
    PatchApplied: lambda p: f"patch {p.patch!r}",
}


def opens_step(payload: object) -> bool:
    if isinstance(payload, PolicyDenied):
        return payload.suspend
    return type(payload) in BY_REQUEST


def kind_of(payload: object) -> StepKind | None:
    """The step kind a request or result event belongs to (None for other events)."""
    return BY_REQUEST.get(type(payload)) or BY_RESULT.get(type(payload))


def identity(payload: EventPayload) -> tuple[Any, ...]:
    """The part of a produced event that must match the journal on replay."""
    kind = BY_REQUEST.get(type(payload))
    if kind is not None:
        return kind.identity(payload)
    other = _OTHER_IDENTITY.get(type(payload))
    return other(payload) if other is not None else (type(payload).__name__,)


def describe(payload: EventPayload) -> str:
    """A short human description of an event payload, used in drift reports."""
    kind = BY_REQUEST.get(type(payload))
    if kind is not None:
        return kind.describe(payload)
    other = _OTHER_DESCRIPTION.get(type(payload))
    return other(payload) if other is not None else type(payload).__name__


def waits_for(payload: object) -> Waits | None:
    """What an open step waits for (None if the payload opens no step)."""
    kind = BY_REQUEST.get(type(payload))
    return kind.waits_for(payload) if kind is not None else None
