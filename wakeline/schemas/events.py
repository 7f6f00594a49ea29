"""Python mirrors of ``event.avsc``: the journal's event types.

``event.avsc`` is the source of truth; ``tests/test_schemas.py`` proves these classes have the
same fields, in the same order, with matching types.  JSON-valued fields (``input``,
``request``, ``message``, ``result`` ...) hold canonical JSON text
(:func:`wakeline.jsonutil.dumps`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from wakeline.schemas.usage import Usage

ValueKind = Literal["CLOCK", "UUID", "RANDOM"]
Resolution = Literal["RETRY", "SUPPLY", "FAIL"]


@dataclass(frozen=True, slots=True)
class Budget:
    """A run's limits; ``None`` is unlimited.  ``usd`` is a decimal string (exact)."""

    usd: str | None = None
    tokens: int | None = None
    model_calls: int | None = None
    wall_time_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Fork:
    """Where a forked run comes from: its journal before ``seq`` is ``source``'s, reused and
    never billed again; ``model``, if set, is the model of its model calls from ``seq`` on;
    ``tools="recorded"``: a tool call from ``seq`` on that matches one of the source's (tool and
    arguments) gets the source's result instead of running."""

    source: str
    seq: int
    model: str = ""
    tools: str = "live"
    prompt: str = ""


@dataclass(frozen=True, slots=True)
class Session:
    """The durable session a run is a turn of: ``id`` is the session's key (like a framework's
    thread id), ``turn`` the run's index in it, from 0."""

    id: str
    turn: int


@dataclass(frozen=True, slots=True)
class RunStarted:
    agent: str
    input: str
    tenant: str = ""
    command_id: str = ""
    budget: Budget | None = None
    fork: Fork | None = None
    version: str = ""
    code_digest: str = ""
    session: Session | None = None


@dataclass(frozen=True, slots=True)
class RunCompleted:
    output: str


@dataclass(frozen=True, slots=True)
class RunFailed:
    error_type: str
    message: str


@dataclass(frozen=True, slots=True)
class RunCancelled:
    reason: str
    by: str = ""


@dataclass(frozen=True, slots=True)
class ModelCallRequested:
    provider: str
    model: str
    request_digest: str
    request: str
    stream: bool = False
    attempt: int = 1
    base_seq: int = -1
    """-1: ``request`` is the whole request; else the request extends the one at this seq:
    its messages are that request's messages (then its reply if ``base_reply``), then the
    messages in ``request`` (see :mod:`wakeline.core.history`)."""
    base_reply: bool = False
    route: str = ""
    """The route (``app.route``) this attempt's target was chosen from; empty when direct."""


@dataclass(frozen=True, slots=True)
class ModelCallCompleted:
    step: int
    provider: str
    model: str
    response_id: str
    response_model: str
    finish_reason: str
    message: str
    usage: Usage
    latency_us: int
    cost_usd: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ModelCallFailed:
    step: int
    error_type: str
    message: str
    retriable: bool
    status_code: int | None = None
    latency_us: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallRequested:
    tool: str
    args: str
    args_digest: str
    idempotency_key: str
    idempotent: bool


@dataclass(frozen=True, slots=True)
class ToolCallCompleted:
    step: int
    result: str
    latency_us: int


@dataclass(frozen=True, slots=True)
class ToolCallFailed:
    step: int
    error_type: str
    message: str
    retriable: bool = False


@dataclass(frozen=True, slots=True)
class StepRequested:
    name: str


@dataclass(frozen=True, slots=True)
class StepCompleted:
    step: int
    result: str


@dataclass(frozen=True, slots=True)
class StepFailed:
    step: int
    error_type: str
    message: str


@dataclass(frozen=True, slots=True)
class ValueRecorded:
    kind: ValueKind
    value: str


@dataclass(frozen=True, slots=True)
class TimerScheduled:
    fire_at_ms: int
    duration_ms: int
    purpose: str = "sleep"


@dataclass(frozen=True, slots=True)
class TimerFired:
    step: int


@dataclass(frozen=True, slots=True)
class GateOpened:
    name: str
    payload: str
    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class GateResolved:
    step: int
    approved: bool
    by: str
    reason: str = ""
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class PolicyDenied:
    kind: str
    target: str
    policy: str
    reason: str
    suspend: bool


@dataclass(frozen=True, slots=True)
class BudgetExceeded:
    kind: str
    target: str
    scope: str
    metric: str
    limit: str
    spent: str
    reservation: str


@dataclass(frozen=True, slots=True)
class BudgetRaised:
    step: int
    metric: str
    limit: str
    by: str = ""
    scope: str = "run"


@dataclass(frozen=True, slots=True)
class ToolCallInDoubt:
    step: int
    reason: str


@dataclass(frozen=True, slots=True)
class InDoubtResolved:
    step: int
    resolution: Resolution
    by: str = ""
    result: str = ""


@dataclass(frozen=True, slots=True)
class ModelCallDenied:
    step: int
    scope: str
    metric: str
    limit: str
    spent: str
    reservation: str


@dataclass(frozen=True, slots=True)
class ModelCallInterrupted:
    """Recovery closed an open model call whose worker stopped after sending it: the attempt
    may have reached the provider.  ``ctx.llm`` sends the call again as a new attempt (a new
    ``ModelCallRequested``) once the budgets cover it; the interrupted attempt stays reserved
    until then and counts at its worst case (see :class:`wakeline.core.governance.RunLedger`).
    """

    step: int
    attempt: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ModelRouteFallback:
    """A routed model call moved on from a target of its route: a policy denied it or a budget
    could not cover it (``reason`` "policy" / "budget": it was never sent), or its attempts
    failed with retriable errors or timeouts ("failed").  The next target follows."""

    route: str
    provider: str
    model: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class PatchApplied:
    """``ctx.patched(patch)`` took the new code path here; a run replaying past this point
    without the marker was started by older code and takes the old path."""

    patch: str


@dataclass(frozen=True, slots=True)
class RunUpgraded:
    """``wakeline runs upgrade`` replayed the run up to ``checked_seq`` against the code of
    ``to_version`` with no divergence and moved it there: from here on only a worker hosting
    ``to_version`` drives it."""

    from_version: str
    to_version: str
    checked_seq: int
    by: str = ""


EventPayload = (
    RunStarted
    | RunCompleted
    | RunFailed
    | RunCancelled
    | ModelCallRequested
    | ModelCallCompleted
    | ModelCallFailed
    | ToolCallRequested
    | ToolCallCompleted
    | ToolCallFailed
    | StepRequested
    | StepCompleted
    | StepFailed
    | ValueRecorded
    | TimerScheduled
    | TimerFired
    | GateOpened
    | GateResolved
    | PolicyDenied
    | BudgetExceeded
    | BudgetRaised
    | ToolCallInDoubt
    | InDoubtResolved
    | ModelCallDenied
    | ModelCallInterrupted
    | ModelRouteFallback
    | PatchApplied
    | RunUpgraded
)

EVENT_TYPES: tuple[type[EventPayload], ...] = (
    RunStarted,
    RunCompleted,
    RunFailed,
    RunCancelled,
    ModelCallRequested,
    ModelCallCompleted,
    ModelCallFailed,
    ToolCallRequested,
    ToolCallCompleted,
    ToolCallFailed,
    StepRequested,
    StepCompleted,
    StepFailed,
    ValueRecorded,
    TimerScheduled,
    TimerFired,
    GateOpened,
    GateResolved,
    PolicyDenied,
    BudgetExceeded,
    BudgetRaised,
    ToolCallInDoubt,
    InDoubtResolved,
    ModelCallDenied,
    ModelCallInterrupted,
    ModelRouteFallback,
    PatchApplied,
    RunUpgraded,
)

TERMINAL_TYPES = (RunCompleted, RunFailed, RunCancelled)


@dataclass(frozen=True, slots=True)
class Event:
    """One journal entry.  ``seq`` is dense per run from 0 (``RunStarted``)."""

    run_id: str
    seq: int
    time_ms: int
    writer: str
    payload: EventPayload
    prev: str = field(default="", compare=False)
    """sha256 (hex) of the record of the run's previous event: the log's own hash chain, set
    by the writer (:mod:`wakeline.actors.appender`), not by the core; equality ignores it."""

    @property
    def type(self) -> str:
        return type(self.payload).__name__

    @property
    def is_terminal(self) -> bool:
        return isinstance(self.payload, TERMINAL_TYPES)
