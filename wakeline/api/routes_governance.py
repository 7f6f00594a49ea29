"""Decisions only people make, and the audit trail: approve or reject a gate (approver), raise
a budget (operator), resolve an in-doubt tool call (approver), read the audit chain (viewer).

The caller's key *name* is the issuer of the command, and the journal records it as who
decided.  Each command is checked against the API's views first: a run that does not wait for
it gets a 409 and nothing is published.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path

from wakeline.actors.commands import check_command
from wakeline.api.auth import AUTH_RESPONSES, ApproverKey, OperatorKey, Principal, ViewerKey
from wakeline.api.errors import ApiError, canonical_input, json_safe
from wakeline.api.models import (
    AuditTrail,
    AuditVerification,
    BudgetRequest,
    CommandAccepted,
    DecisionRequest,
    InDoubtRequest,
)
from wakeline.api.pending import find_gate, in_doubt, waits_on_budget
from wakeline.api.routes_runs import MAX_SEQ, NOT_FOUND, RunId, known_run, open_run
from wakeline.api.state import Api, ApiState
from wakeline.projections.audit import audit_trail
from wakeline.projections.rows import AuditReport, StepRow
from wakeline.schemas.budgets import is_metric
from wakeline.schemas.commands import RaiseBudget

router = APIRouter(prefix="/v1", tags=["governance"], responses=AUTH_RESPONSES)

GateName = Annotated[
    str, Path(min_length=1, max_length=200, description="the gate's name, or its step's seq")
]
Seq = Annotated[int, Path(ge=0, le=MAX_SEQ, description="the seq of the in-doubt tool call")]
CONFLICT: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"description": "the run does not wait for this (ended, or no such open step)"},
    422: {"description": "invalid body"},
}
AUDIT_LAG_S = 2.0
"""How long an audit check waits for the views to fold events the log already has."""


async def _waiting_steps(api: ApiState, run_id: str) -> list[StepRow]:
    """The run's steps; 404 for an unknown run, 409 for one that has ended."""
    await open_run(api, run_id)
    return api.queries.steps(run_id)


async def _decide(
    api: ApiState,
    who: Principal,
    run_id: str,
    gate: str,
    body: DecisionRequest | None,
    command: Literal["approve", "reject"],
) -> CommandAccepted:
    steps = await _waiting_steps(api, run_id)
    if find_gate(steps, gate) is None:
        raise ApiError(409, f"run {run_id!r} has no open gate {gate!r}")
    reason = body.reason if body is not None else ""
    if not (json_safe(reason) and json_safe(gate)):
        raise ApiError(422, "gate and reason must be valid Unicode")
    client = api.client(who)
    await (client.approve if command == "approve" else client.reject)(run_id, gate, reason)
    return CommandAccepted(run_id=run_id, command=command, issuer=who.name)


def _gate_route(command: Literal["approve", "reject"], doc: str) -> None:
    """``POST /v1/runs/{run_id}/gates/{gate}/{command}`` (approver)."""

    async def decide(
        run_id: RunId,
        gate: GateName,
        who: ApproverKey,
        api: Api,
        body: Annotated[DecisionRequest | None, Body()] = None,
    ) -> CommandAccepted:
        return await _decide(api, who, run_id, gate, body, command)

    decide.__doc__ = doc
    router.post(
        f"/runs/{{run_id}}/gates/{{gate}}/{command}",
        status_code=202,
        response_model=CommandAccepted,
        responses=CONFLICT,
        name=f"{command}_gate",
    )(decide)


_gate_route("approve", "Approve an open gate, or send a call a policy suspended anyway (approver).")
_gate_route(
    "reject", "Reject an open gate (the agent sees the decision) or a suspended call (approver)."
)


@router.post(
    "/runs/{run_id}/budget", status_code=202, response_model=CommandAccepted, responses=CONFLICT
)
async def raise_budget(
    run_id: RunId, body: BudgetRequest, who: OperatorKey, api: Api
) -> CommandAccepted:
    """Raise the limit the run waits on; the waiting call is checked again (operator)."""
    metric, limit = body.metric, str(body.limit)
    problem = check_command(RaiseBudget(metric, limit))
    if problem is not None or not is_metric(metric):
        raise ApiError(422, problem or f"unknown budget metric {metric!r}")
    steps = await _waiting_steps(api, run_id)
    if not waits_on_budget(steps, metric):
        raise ApiError(409, f"run {run_id!r} is not waiting on its {metric} budget")
    await api.client(who).raise_budget(run_id, metric, limit)
    return CommandAccepted(run_id=run_id, command="raise_budget", issuer=who.name)


@router.post(
    "/runs/{run_id}/in-doubt/{seq}",
    status_code=202,
    response_model=CommandAccepted,
    responses=CONFLICT,
)
async def resolve_in_doubt(
    run_id: RunId, seq: Seq, body: InDoubtRequest, who: ApproverKey, api: Api
) -> CommandAccepted:
    """Resolve a tool call that may or may not have run: RETRY it with the same idempotency
    key, SUPPLY its result, or FAIL the run (approver)."""
    if body.resolution == "SUPPLY":
        try:
            canonical_input(body.result)
        except (ValueError, RecursionError) as exc:
            raise ApiError(422, f"result is not representable as JSON: {exc}") from None
    steps = await _waiting_steps(api, run_id)
    if not in_doubt(steps, seq):
        raise ApiError(409, f"run {run_id!r} has no in-doubt call at seq {seq}")
    await api.client(who).resolve_in_doubt(run_id, seq, body.resolution, body.result)
    return CommandAccepted(run_id=run_id, command="resolve_in_doubt", issuer=who.name)


@router.get("/runs/{run_id}/audit", response_model=AuditTrail, responses=NOT_FOUND)
async def run_audit(run_id: RunId, _: ViewerKey, api: Api) -> AuditTrail:
    """The run's hash chain (who decided what) and its check against the log (viewer)."""
    await known_run(api, run_id)
    report = await _verified(api, run_id)
    entries = audit_trail(api.queries.store, run_id)
    verification = AuditVerification.of(report)
    return AuditTrail(run_id=run_id, entries=entries, verification=verification)


async def _verified(api: ApiState, run_id: str) -> AuditReport:
    """:func:`verify`, waiting a moment when the views have not folded the newest events."""
    deadline = time.monotonic() + AUDIT_LAG_S
    while True:
        report = await api.views.verify_audit(run_id)
        behind = bool(report.problems) and all(
            p.problem == "not in the audit trail" for p in report.problems
        )
        if not behind or time.monotonic() >= deadline:
            return report
        await asyncio.sleep(0.1)
