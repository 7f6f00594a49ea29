"""Request and response bodies of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from wakeline.core.ids import RUN_ID_PATTERN
from wakeline.forking import MAX_PROMPT_CHARS
from wakeline.projections.rows import (
    AuditEntry,
    AuditProblem,
    AuditReport,
    BudgetRow,
    CostDimension,
    CostRow,
    Page,
    RunRow,
    StepRow,
)
from wakeline.schemas.budgets import METRICS


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


@dataclass(frozen=True, slots=True)
class RunDetail(RunRow):
    """A run's summary row and what waits for a person."""

    pending_gates: tuple[PendingGate, ...] = ()


class RunPage(BaseModel):
    """A :class:`~wakeline.projections.rows.Page` of runs, as the API sends it."""

    runs: list[RunRow]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")

    @classmethod
    def of(cls, page: Page[RunRow]) -> RunPage:
        return cls(runs=list(page.items), next_cursor=page.next_cursor)


class StepList(BaseModel):
    run_id: str
    steps: list[StepRow]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


class StartRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, max_length=200, description="the agent's name")
    input: Any = Field(None, description="the agent's input (JSON)")
    run_id: str | None = Field(
        None, pattern=RUN_ID_PATTERN, description="idempotency key of the start (default: new)"
    )
    tenant: str = Field("", max_length=200)
    session: str | None = Field(
        None,
        pattern=RUN_ID_PATTERN,
        max_length=112,
        description="start the next turn of this session (run id `{session}:{turn}`)",
    )
    version: str = Field(
        "",
        max_length=100,
        description="the agent version to start (default: the starting worker's highest)",
    )


class StartRunResponse(BaseModel):
    run_id: str
    partition: int
    from_offset: int = Field(description="events offset at or before the run's first event")


class ForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: int = Field(ge=1, le=10**12 - 1, description="the seq of the model or tool call to redo")
    model: str = Field("", max_length=200, description="the model of its calls from `at` on")
    tools: Literal["live", "recorded"] = Field(
        "live", description="recorded: tool calls matching the source's get its results"
    )
    prompt: str = Field(
        "",
        max_length=MAX_PROMPT_CHARS,
        description="the system prompt of its model calls from `at` on (replaces theirs)",
    )


class SessionForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at_turn: int = Field(ge=1, le=10**9, description="the first turn of the new session to run")
    session: str = Field(
        "", pattern=f"^$|{RUN_ID_PATTERN}", max_length=112, description="the new session's id"
    )
    input: Any = Field(None, description="the turn's input (default: the source's turn input)")
    model: str = Field("", max_length=200, description="the model of that turn's calls")


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

    metric: str = Field(max_length=40, description=" | ".join(METRICS))
    limit: Decimal = Field(description="the new limit (a number >= 0; dollars for usd)")


class InDoubtRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Literal["RETRY", "SUPPLY", "FAIL"] = Field(
        description="RETRY the call (same idempotency key), SUPPLY its result, or FAIL the run"
    )
    result: Any = Field(None, description="the call's result (JSON), with SUPPLY")


class AuditVerification(BaseModel):
    ok: bool = Field(description="every event of the log matches the chain")
    events: int = Field(description="events of the run read back from the log")
    problems: list[AuditProblem]

    @classmethod
    def of(cls, report: AuditReport) -> AuditVerification:
        return cls(ok=report.ok, events=report.events, problems=list(report.problems))


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


class CostRows(BaseModel):
    dimension: CostDimension
    name: str | None = Field(None, description="the filter: the rows' first name")
    rows: list[CostRow] = Field(description="in key order (days: oldest first)")


class SharedLimitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    usd: Decimal | None = Field(
        description="the dollar limit shared by all the runs of the tenant or agent "
        "(a number >= 0); null removes it",
        ge=0,
        max_digits=30,
    )


class SharedLimitSet(BaseModel):
    key: str = Field(description="the ledger key: tenant:<name> or agent:<name>")
    usd: str | None = Field(description="the new limit (exact decimal text); null: none")
    by: str = Field(description="the API key's name: who the ledger says set it")


class SharedBudgetList(BaseModel):
    budgets: list[BudgetRow] = Field(description="in ledger key order")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    projections_folded: int
    projections_error: str | None = None


class Me(BaseModel):
    name: str
    role: Literal["viewer", "operator", "approver"]
