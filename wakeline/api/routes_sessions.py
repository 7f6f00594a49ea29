"""Sessions: ``GET /v1/sessions/{session_id}`` (its turns) and ``POST
/v1/sessions/{session_id}/fork`` (a new session that reuses its turns before a turn); a turn is
started with ``POST /v1/runs`` and ``session`` (see :mod:`wakeline.sessions`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from wakeline.api.auth import AUTH_RESPONSES, OperatorKey, ViewerKey
from wakeline.api.errors import ApiError, json_safe
from wakeline.api.models import SessionForkRequest, StartRunResponse
from wakeline.api.session_turns import SessionsClient, session_problem
from wakeline.api.state import Api
from wakeline.core.sessions import SessionError
from wakeline.sessions import SessionRow

router = APIRouter(prefix="/v1", tags=["sessions"], responses=AUTH_RESPONSES)

SessionId = Annotated[str, Path(min_length=1, max_length=200, description="the session id")]
UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"description": "unknown session"}}


class TurnInfo(BaseModel):
    turn: int
    run_id: str
    session: str = Field(description="the session whose run it is (the source's before a fork)")
    agent: str
    status: str = Field(description="running, completed, failed or cancelled")
    input: Any
    output: Any
    error: str | None
    started_ms: int
    ended_ms: int | None


class SessionInfo(BaseModel):
    id: str
    turns: list[TurnInfo]
    next_turn: int
    forked_from: str | None = Field(description="the session this one was forked from")
    fork_turn: int | None = Field(description="its first own turn, if it was forked")


async def _row(client: SessionsClient, session_id: str) -> SessionRow:
    try:
        row = await client.session(session_id)
    except SessionError as exc:
        raise ApiError(422, str(exc)) from None
    if row is None:
        raise ApiError(404, f"unknown session {session_id!r}")
    return row


@router.get("/sessions/{session_id}", response_model=SessionInfo, responses=UNKNOWN)
async def get_session(session_id: SessionId, who: ViewerKey, api: Api) -> SessionInfo:
    """The session's turns in order, those before a fork point the source session's."""
    row = await _row(SessionsClient(api, who), session_id)
    return SessionInfo(**row.to_json(), next_turn=row.next_turn)


@router.post(
    "/sessions/{session_id}/fork",
    status_code=202,
    response_model=StartRunResponse,
    responses={**UNKNOWN, 409: {"description": "the turn before at_turn has not ended"}},
)
async def fork_session(
    session_id: SessionId, body: SessionForkRequest, who: OperatorKey, api: Api
) -> StartRunResponse:
    """Start a new session whose turns before ``at_turn`` are this one's (reused, never run or
    billed again) and whose turn ``at_turn`` runs live (operator)."""
    client = SessionsClient(api, who)
    await _row(client, session_id)
    if not json_safe(body.model):
        raise ApiError(422, "model must be valid Unicode")
    extra = {} if body.input is None else {"input": body.input}
    try:
        handle = await client.fork_session(
            session_id, at_turn=body.at_turn, session=body.session, model=body.model, **extra
        )
    except SessionError as exc:
        raise session_problem(exc) from None
    return StartRunResponse(
        run_id=handle.run_id, partition=handle.partition, from_offset=handle.from_offset
    )
