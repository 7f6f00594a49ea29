"""Runs: start, list, get, steps, cancel, resume; the agents the server knows."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from pydantic import ValidationError

from wakeline.api.auth import AUTH_RESPONSES, OperatorKey, ViewerKey
from wakeline.api.errors import ApiError, canonical_input, describe_errors, json_safe, summarize
from wakeline.api.models import (
    AgentInfo,
    AgentList,
    CancelRequest,
    CommandAccepted,
    Me,
    RunDetail,
    RunPage,
    StartRunRequest,
    StartRunResponse,
    StepList,
)
from wakeline.api.pending import pending_gates
from wakeline.api.session_turns import start_turn
from wakeline.api.state import Api, ApiState
from wakeline.projections.rows import RunRow, RunStatus, StepRow, values
from wakeline.projections.runs import MAX_MS
from wakeline.schemas.commands import StartRun

MAX_PAGE = 500
MAX_SEQ = 10**12 - 1

router = APIRouter(prefix="/v1", tags=["runs"], responses=AUTH_RESPONSES)

SinceMs = Annotated[int | None, Query(ge=0, le=MAX_MS, description="started at or after")]
UntilMs = Annotated[int | None, Query(ge=0, le=MAX_MS, description="started before")]
RunId = Annotated[str, Path(min_length=1, max_length=200, description="the run id")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown run"}}


@router.post(
    "/runs",
    status_code=202,
    response_model=StartRunResponse,
    responses={
        400: {"description": "malformed JSON"},
        404: {"description": "unknown agent (the server was given the agents' app)"},
        409: {"description": "the session's last turn has not ended"},
        413: {"description": "body or input too large"},
        422: {"description": "the input does not match the agent's input schema"},
    },
)
async def start_run(body: StartRunRequest, who: OperatorKey, api: Api) -> StartRunResponse:
    """Publish a start command (operator).  Checked before publishing: nothing is published
    on a bad request."""
    if not (json_safe(body.agent) and json_safe(body.tenant) and json_safe(body.version)):
        raise ApiError(422, "agent, tenant and version must be valid Unicode")
    try:
        text = canonical_input(body.input)
    except (ValueError, RecursionError) as exc:
        raise ApiError(422, f"input is not representable as JSON: {exc}") from None
    size = len(text.encode())
    if size > api.max_input_bytes:
        raise ApiError(
            413, f"input of {size} bytes exceeds the limit of {api.max_input_bytes} bytes"
        )
    _check_agent(api, body.agent, text, body.version)
    if body.session:  # the session's next turn, by the API's views (wakeline.sessions)
        payload = StartRun(body.agent, text, body.tenant, version=body.version)
        handle = await start_turn(api, who, payload, body.session, body.run_id)
    else:
        handle = await api.client(who).start_run(
            body.agent, body.input, run_id=body.run_id, tenant=body.tenant, version=body.version
        )
    return StartRunResponse(
        run_id=handle.run_id, partition=handle.partition, from_offset=handle.from_offset
    )


def _check_agent(api: ApiState, agent: str, text: str, version: str) -> None:
    """404 for an agent the API's app does not know; 422 for input its schema refuses (that of
    ``version`` if the app has it: a version only the workers host is theirs to check)."""
    if api.app is None:
        return
    if version and api.app.get_agent(agent) and not api.app.get_agent(agent, version):
        return
    spec = api.app.get_agent(agent, version or None)
    if spec is None:
        known = sorted(api.app.agents)
        raise ApiError(
            404, f"unknown agent {agent!r} (agents: {', '.join(known) or 'none'})", agents=known
        )
    try:
        spec.input_adapter.validate_json(text)
    except ValidationError as exc:
        errors = describe_errors(exc.errors())
        raise ApiError(
            422, f"invalid input for agent {agent!r}: {summarize(errors)}", errors=errors
        ) from None


@router.get("/runs", response_model=RunPage, responses={400: {"description": "bad cursor"}})
async def list_runs(
    _: ViewerKey,
    api: Api,
    status: RunStatus | None = None,
    agent: Annotated[str | None, Query(max_length=200)] = None,
    tenant: Annotated[str | None, Query(max_length=200)] = None,
    since_ms: SinceMs = None,
    until_ms: UntilMs = None,
    orphaned: Annotated[
        bool | None,
        Query(description="only runs that are (true) or are not (false) orphaned"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    fields: Annotated[
        str | None,
        Query(
            max_length=100,
            description="extra fields, comma-separated: `input`, `output` (a page of runs is "
            "summaries without them unless asked: they can be large)",
        ),
    ] = None,
) -> RunPage:
    """Runs, newest first, as summaries (viewer)."""
    extra = _extra_fields(fields)
    await api.views.refresh_hosted()
    try:
        page = api.queries.list_runs(
            status=status,
            agent=agent,
            tenant=tenant,
            orphaned=orphaned,
            since_ms=since_ms,
            until_ms=until_ms,
            limit=limit,
            cursor=cursor,
        )
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    runs = [_summary(r, extra) for r in page.items]
    return RunPage(runs=runs, next_cursor=page.next_cursor)


def _summary(row: RunRow, extra: frozenset[str]) -> RunRow:
    """``row`` without its input and output, unless asked for."""
    return replace(
        row,
        input=row.input if "input" in extra else None,
        output=row.output if "output" in extra else None,
    )


LARGE_FIELDS = frozenset({"input", "output"})


def _extra_fields(fields: str | None) -> frozenset[str]:
    asked = frozenset(f.strip() for f in (fields or "").split(",") if f.strip())
    unknown = asked - LARGE_FIELDS
    if unknown:
        known = ", ".join(sorted(LARGE_FIELDS))
        raise ApiError(400, f"unknown fields {', '.join(sorted(unknown))} (known: {known})")
    return asked


async def known_run(api: ApiState, run_id: str) -> RunRow:
    await api.views.refresh_hosted()
    row = api.queries.get_run(run_id)
    if row is None:
        raise ApiError(404, f"unknown run {run_id!r}")
    return row


@router.get("/runs/{run_id}", response_model=RunDetail, responses=NOT_FOUND)
async def get_run(run_id: RunId, _: ViewerKey, api: Api) -> RunDetail:
    """One run's summary, with the gates waiting for an approver (viewer)."""
    row = await known_run(api, run_id)
    gates = pending_gates(api.queries.steps(run_id))
    return RunDetail(**values(row), pending_gates=tuple(gates))


@router.get("/runs/{run_id}/steps", response_model=StepList, responses=NOT_FOUND)
async def run_steps(
    run_id: RunId,
    _: ViewerKey,
    api: Api,
    payloads: Annotated[bool, Query(description="include request/response JSON text")] = True,
    limit: Annotated[int, Query(ge=1, le=MAX_STEPS_PAGE)] = 200,
    cursor: Annotated[str | None, Query(max_length=20, pattern=r"^\d+$")] = None,
) -> StepList:
    """The run's steps in seq order, a page at a time: kind, name, status, tokens, cost,
    latency (viewer)."""
    await known_run(api, run_id)
    after = -1 if cursor is None else int(cursor)
    page = api.queries.steps_page(run_id, after=after, limit=limit)
    steps = [_step(row, payloads) for row in page.items]
    return StepList(run_id=run_id, steps=steps, next_cursor=page.next_cursor)


MAX_STEPS_PAGE = 1000


@router.get("/runs/{run_id}/steps/{seq}", response_model=StepRow, responses=NOT_FOUND)
async def run_step(
    run_id: RunId, seq: Annotated[int, Path(ge=0, le=MAX_SEQ)], _: ViewerKey, api: Api
) -> StepRow:
    """One step with its payloads (viewer)."""
    await known_run(api, run_id)
    row = api.queries.step(run_id, seq)
    if row is None:
        raise ApiError(404, f"run {run_id!r} has no step {seq}")
    return row


def _step(row: StepRow, payloads: bool) -> StepRow:
    return row if payloads else replace(row, request=None, response=None)


@router.post(
    "/runs/{run_id}/cancel",
    status_code=202,
    response_model=CommandAccepted,
    responses={**NOT_FOUND, 409: {"description": "the run has already ended"}},
)
async def cancel_run(
    run_id: RunId,
    who: OperatorKey,
    api: Api,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> CommandAccepted:
    """Ask the workers to cancel the run (operator)."""
    row = await open_run(api, run_id)
    reason = body.reason if body is not None and body.reason else f"cancelled by {who.name}"
    if not json_safe(reason):
        raise ApiError(422, "reason must be valid Unicode")
    await api.client(who).cancel(row.run_id, reason)
    return CommandAccepted(run_id=run_id, command="cancel", issuer=who.name)


@router.post(
    "/runs/{run_id}/resume",
    status_code=202,
    response_model=CommandAccepted,
    responses={**NOT_FOUND, 409: {"description": "the run has already ended"}},
)
async def resume_run(run_id: RunId, who: OperatorKey, api: Api) -> CommandAccepted:
    """Ask the workers to resume the run from its journal, e.g. after a drift (operator)."""
    await open_run(api, run_id)
    await api.client(who).resume(run_id)
    return CommandAccepted(run_id=run_id, command="resume", issuer=who.name)


async def open_run(api: ApiState, run_id: str) -> RunRow:
    row = await known_run(api, run_id)
    if row.ended:
        raise ApiError(409, f"run {run_id!r} has already ended ({row.status})")
    return row


@router.get("/agents", response_model=AgentList, tags=["agents"])
async def agents(_: ViewerKey, api: Api) -> AgentList:
    """The agents of the app the server was given (empty without one), with input schemas."""
    if api.app is None:
        return AgentList(agents=[], validated=False)
    infos = [
        AgentInfo(name=name, input_schema=_schema(api, name)) for name in sorted(api.app.agents)
    ]
    return AgentList(agents=infos, validated=True)


def _schema(api: ApiState, name: str) -> dict[str, Any] | None:
    assert api.app is not None
    try:
        schema: dict[str, Any] = api.app.agents[name].input_adapter.json_schema()
    except Exception:  # an input type pydantic cannot describe
        return None
    return schema


@router.get("/me", response_model=Me, tags=["auth"])
async def me(who: ViewerKey) -> Me:
    """The caller's key name and role (any key)."""
    return Me.model_validate({"name": who.name, "role": who.role.label})
