"""Request and response bodies of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RunStatus = Literal["running", "waiting", "completed", "failed", "cancelled", "drifted", "rejected"]
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
    command: Literal["cancel", "resume"]
    issuer: str


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


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    projections_folded: int
    projections_error: str | None = None


class Me(BaseModel):
    name: str
    role: Literal["viewer", "operator", "approver"]
