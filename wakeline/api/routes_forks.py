"""Forks and diffs: ``POST /v1/runs/{run_id}/fork`` starts a run that reuses this one's journal
up to a step and runs live from there, ``GET /v1/runs/{run_id}/fork`` says where a run was
forked from, and ``GET /v1/diff?a=&b=`` is ``wakeline diff`` as JSON (see
:mod:`wakeline.forking`, :mod:`wakeline.diffing`)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from wakeline.api.auth import AUTH_RESPONSES, OperatorKey, ViewerKey
from wakeline.api.errors import ApiError, json_safe
from wakeline.api.models import ForkRequest, StartRunResponse
from wakeline.api.routes_runs import NOT_FOUND, RunId, known_run
from wakeline.api.state import Api, ApiState
from wakeline.diffing import diff_json, diff_runs
from wakeline.forking import ForkEdits, ForkError
from wakeline.projections.rows import RunRow
from wakeline.schemas.events import Event, RunStarted
from wakeline.watching import run_events

router = APIRouter(prefix="/v1", tags=["runs"], responses=AUTH_RESPONSES)

MAX_PAIRS = 500
"""The most pairs of steps one ``GET /v1/diff`` sends."""


class ForkOrigin(BaseModel):
    source: str = Field(description="the run it was forked from")
    seq: int = Field(description="the fork point: the source's journal before it is reused")
    model: str = Field(description="the model of its model calls from `seq` on ('': the source's)")
    tools: str = Field(description="live, or recorded: the source's tool results are served")
    prompt: str = Field(description="the system prompt of its model calls from `seq` on")


class ForkInfo(BaseModel):
    run_id: str
    fork: ForkOrigin | None = Field(description="null: the run is not a fork")


class DiffTokens(BaseModel):
    input: int
    output: int


class DiffStep(BaseModel):
    seq: int
    kind: str = Field(description="model, tool, step, timer, gate, policy or budget")
    name: str = Field(description="its model, tool, gate, ...")
    prompt: str = Field(description="a model call's last message, a tool call's arguments")
    system: str = Field(description="a model call's system prompt")
    output: str
    tokens: DiffTokens | None
    cost_usd: str | None
    latency_ms: float | None


class DiffPair(BaseModel):
    index: int = Field(description="the pair's place: the n-th step of each run")
    a: DiffStep | None = Field(description="null: run A has no n-th step")
    b: DiffStep | None
    changed: list[str] = Field(description="prompt, system, output, tokens, cost: what differs")
    diverged: bool = Field(description="the two asked for different things (or one has none)")
    first: bool = Field(description="the first divergence")


class RunDiffBody(BaseModel):
    a: str
    b: str
    first_divergence: DiffPair | None = Field(description="null: the same steps were asked for")
    differing: int = Field(description="how many pairs differ at all")
    total_pairs: int = Field(description="how many pairs of steps there are")
    pairs: list[DiffPair] = Field(description="pairs of steps from `offset`, in opening order")
    next_offset: int | None = Field(description="pass as `offset` for the next page")


@router.post(
    "/runs/{run_id}/fork",
    status_code=202,
    response_model=StartRunResponse,
    responses={**NOT_FOUND, 422: {"description": "not a point this run can be forked at"}},
)
async def fork_run(
    run_id: RunId, body: ForkRequest, who: OperatorKey, api: Api
) -> StartRunResponse:
    """Start a run of the same agent and input that reuses this run's journal before seq
    ``at`` (nothing before it is sent or billed again) and runs live from there, with
    ``model`` for its model calls and ``prompt`` as their system prompt if given (operator)."""
    await known_run(api, run_id)
    if not (json_safe(body.model) and json_safe(body.prompt)):
        raise ApiError(422, "model and prompt must be valid Unicode")
    edits = ForkEdits(model=body.model, tools=body.tools, prompt=body.prompt)
    try:
        handle = await api.client(who).fork(run_id, at=body.at, **edits)
    except ForkError as exc:
        raise ApiError(422, str(exc)) from None
    return StartRunResponse(
        run_id=handle.run_id, partition=handle.partition, from_offset=handle.from_offset
    )


@router.get("/runs/{run_id}/fork", response_model=ForkInfo, responses=NOT_FOUND)
async def fork_of(run_id: RunId, _: ViewerKey, api: Api) -> ForkInfo:
    """Where the run was forked from, if it is a fork (viewer)."""
    started = await _journal(api, await known_run(api, run_id), limit=1)
    head = started[0].payload if started else None
    fork = head.fork if isinstance(head, RunStarted) else None
    origin = None if fork is None else ForkOrigin(**dataclasses.asdict(fork))
    return ForkInfo(run_id=run_id, fork=origin)


RunParam = Annotated[str, Query(min_length=1, max_length=200, description="a run id")]
Offset = Annotated[int, Query(ge=0, le=10**12, description="the first pair's index")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAIRS, description="the most pairs to send")]


@router.get("/diff", response_model=RunDiffBody, responses=NOT_FOUND)
async def diff(
    a: RunParam, b: RunParam, _: ViewerKey, api: Api, offset: Offset = 0, limit: Limit = MAX_PAIRS
) -> Any:
    """Where run ``b`` parts from run ``a`` and how each pair of their steps differs: the
    journals as the log holds them now, in pages of pairs; texts over 4,000 characters are
    cut (viewer)."""
    rows = [await known_run(api, a), await known_run(api, b)]
    journals = [await _journal(api, row) for row in rows]
    return {"a": a, "b": b, **diff_json(diff_runs(*journals), offset=offset, limit=limit)}


async def _journal(api: ApiState, row: RunRow, *, limit: int | None = None) -> list[Event]:
    """The run's events on the log now (from its start; with the record key, only events a
    holder of it appended), up to ``limit`` of them."""
    if row.partition is None or row.start_offset is None:
        return []
    key, topic = row.run_id.encode(), api.topics.events
    end = await api.log.end_offset(topic, row.partition)
    events: list[Event] = []
    offset = row.start_offset
    while offset < end and (limit is None or len(events) < limit):
        batch = 5000 if limit is None else 16
        records = await api.log.read(topic, row.partition, offset, max_records=batch)
        if not records:
            break
        more, _ = run_events(records, key, len(events), api.signer)
        events.extend(more)
        offset = records[-1].offset + 1
    return events if limit is None else events[:limit]
