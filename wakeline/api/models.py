"""Request and response bodies of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RunStatus = Literal[
    "running", "waiting", "suspended", "completed", "failed", "cancelled", "drifted", "rejected"
]
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class Tokens(BaseModel):
    input: int = 0
    output: int = 0
    cached_input: int = 0
    cache_write: int = 0
    reasoning: int = 0


class Run(BaseModel):
    """A run's summary row.  ``input`` and ``output`` are canonical JSON *text*."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    agent: str = ""
    tenant: str = ""
    command_id: str = ""
    status: str
    input: str | None = None
    output: str | None = None
    error: dict[str, Any] | None = None
    cancelled_by: str | None = None
    drift: dict[str, Any] | None = None
    rejection: dict[str, Any] | None = None
    started_ms: int | None = None
    ended_ms: int | None = None
    updated_ms: int = 0
    last_seq: int = -1
    partition: int | None = None
    start_offset: int | None = None
    model_calls: int = 0
    tool_calls: int = 0
    steps: int = 0
    tokens: Tokens = Field(default_factory=Tokens)
    cost_usd: str = "0"
    unpriced_calls: int = 0


class PendingGate(BaseModel):
    """A step only a person can move on: an approval gate, or a call a policy suspended."""

    gate: str = Field(description="the gate's or the policy's name: POST .../gates/{gate}/...")
    seq: int = Field(description="the step's seq (also accepted as {gate})")
    kind: Literal["gate", "policy"]
    requested_ms: int | None = None
    payload: str | None = Field(None, description="the gate's payload (JSON text)")
    timeout_ms: int | None = None
    target: str | None = Field(None, description="the model or tool a policy stopped")
    reason: str | None = Field(None, description="why a policy stopped the call")


class RunDetail(Run):
    """A run's summary row and what waits for a person."""

    pending_gates: list[PendingGate] = Field(default_factory=list)


class RunPage(BaseModel):
    runs: list[Run]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


class Step(BaseModel):
    """One step of a run; ``request`` and ``response`` are JSON *text* (omitted on request)."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    seq: int
    kind: str
    name: str
    status: str
    requested_ms: int | None = None
    completed_ms: int | None = None
    latency_us: int | None = None
    provider: str | None = None
    model: str | None = None
    usage: Tokens | None = None
    cost_usd: str | None = None
    request: str | None = None
    response: str | None = None
    error: dict[str, Any] | None = None


class StepList(BaseModel):
    run_id: str
    steps: list[Step]


class StartRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, max_length=200, description="the agent's name")
    input: Any = Field(None, description="the agent's input (JSON)")
    run_id: str | None = Field(
        None, pattern=RUN_ID_PATTERN, description="idempotency key of the start (default: new)"
    )
    tenant: str = Field("", max_length=200)


class StartRunResponse(BaseModel):
    run_id: str
    partition: int
    from_offset: int = Field(description="events offset at or before the run's first event")


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=2000)


class CommandAccepted(BaseModel):
    run_id: str
    command: Literal["cancel", "resume", "approve", "reject", "raise_budget", "resolve_in_doubt"]
    issuer: str = Field(description="the API key's name: who the journal says decided")


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=2000)


class BudgetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str = Field(max_length=40, description="usd | tokens | model_calls | wall_time_ms")
    limit: Decimal = Field(description="the new limit (a number >= 0; dollars for usd)")


class InDoubtRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Literal["RETRY", "SUPPLY", "FAIL"] = Field(
        description="RETRY the call (same idempotency key), SUPPLY its result, or FAIL the run"
    )
    result: Any = Field(None, description="the call's result (JSON), with SUPPLY")


class AuditEntry(BaseModel):
    seq: int
    hash: str = Field(description="sha256(previous hash + ':' + record_sha256)")
    record_sha256: str
    partition: int
    offset: int
    type: str
    writer: str
    time_ms: int
    by: str | None = Field(None, description="who decided (gates, budgets, in-doubt, cancel)")


class AuditProblem(BaseModel):
    seq: int
    offset: int | None = None
    type: str
    problem: str


class AuditVerification(BaseModel):
    ok: bool = Field(description="every event of the log matches the chain")
    events: int = Field(description="events of the run read back from the log")
    problems: list[AuditProblem]


class AuditTrail(BaseModel):
    run_id: str
    entries: list[AuditEntry]
    verification: AuditVerification


class AgentInfo(BaseModel):
    name: str
    input_schema: dict[str, Any] | None = None


class AgentList(BaseModel):
    agents: list[AgentInfo]
    validated: bool = Field(description="whether the server checks starts against the agents")


class CostLine(BaseModel):
    key: str
    runs: int = 0
    model_calls: int = 0
    tokens: Tokens = Field(default_factory=Tokens)
    cost_usd: str = "0"
    unpriced_calls: int = Field(0, description="model calls without a known price")


class Costs(BaseModel):
    total: CostLine
    by_agent: list[CostLine]
    by_tenant: list[CostLine]
    by_model: list[CostLine] = Field(description="key = provider/model")


CostDimension = Literal["agent", "tenant", "model", "day", "agent-day", "tenant-day"]
"""The dimensions of the costs projection (:data:`wakeline.projections.costs.DIMENSIONS`)."""


class CostRow(BaseModel):
    """The sums of the completed model calls one row names (by ``dimension``: ``agent``;
    ``tenant``; ``provider`` and ``model``; ``day``; ``agent`` and ``day``; ``tenant`` and
    ``day``).  ``""`` is no tenant; ``day`` is the UTC date of the calls."""

    dimension: CostDimension
    agent: str | None = None
    tenant: str | None = None
    provider: str | None = None
    model: str | None = None
    day: str | None = Field(None, description="UTC date, yyyy-mm-dd")
    model_calls: int = 0
    unpriced_calls: int = Field(0, description="model calls without a known price")
    cost_usd: str = Field("0", description="exact decimal text, USD")
    tokens: Tokens = Field(default_factory=Tokens)


class CostRows(BaseModel):
    dimension: CostDimension
    name: str | None = Field(None, description="the filter: the rows' first name")
    rows: list[CostRow] = Field(description="in key order (days: oldest first)")


class SharedBudget(BaseModel):
    """The state of a shared budget, folded from its ledger (amounts: exact decimal text, USD)."""

    key: str = Field(description="the ledger key: tenant:<name> or agent:<name>")
    scope: str = Field(description="tenant or agent")
    name: str
    limit: str | None = Field(None, description="null: no limit (spend is still tracked)")
    limit_by: str | None = Field(None, description="who set the limit")
    limit_ms: int | None = None
    spent: str = Field("0", description="settled spend")
    reserved: str = Field("0", description="sum of the reservations in flight")
    committed: str = Field("0", description="spent + reserved")
    in_flight: int = Field(0, description="reservations in flight")
    reservations: dict[str, str] = Field(
        default_factory=dict, description="request id -> reserved amount, in flight"
    )
    grants: int = 0
    denials: int = 0
    settles: int = 0
    errors: int = Field(0, description="ledger records skipped: amounts that are not decimals")
    updated_ms: int | None = Field(None, description="time of the last ledger record")


class SharedBudgetList(BaseModel):
    budgets: list[SharedBudget] = Field(description="in ledger key order")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    projections_folded: int
    projections_error: str | None = None


class Me(BaseModel):
    name: str
    role: Literal["viewer", "operator", "approver"]
