"""``POST /v1/runs/{run_id}/fork``: a run that reuses this one's journal up to a step and runs
live from there (see :mod:`wakeline.forking`)."""

from __future__ import annotations

from fastapi import APIRouter

from wakeline.api.auth import AUTH_RESPONSES, OperatorKey
from wakeline.api.errors import ApiError, json_safe
from wakeline.api.models import ForkRequest, StartRunResponse
from wakeline.api.routes_runs import NOT_FOUND, RunId, known_run
from wakeline.api.state import Api
from wakeline.forking import ForkEdits, ForkError

router = APIRouter(prefix="/v1", tags=["runs"], responses=AUTH_RESPONSES)


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
