"""``POST /v1/agents/{agent}/upgrade``: the replay-checked upgrade of ``wakeline runs
upgrade`` over HTTP (operator), checked against the API's own app (``wakeline serve --app``);
see :mod:`wakeline.upgrading`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from wakeline.api.auth import AUTH_RESPONSES, OperatorKey
from wakeline.api.errors import ApiError
from wakeline.api.state import Api
from wakeline.upgrading import UpgradeCheck, upgrade_runs

router = APIRouter(prefix="/v1", tags=["runs"], responses=AUTH_RESPONSES)


class UpgradeRequest(BaseModel):
    to_version: Annotated[str, Field(max_length=200, description="the version to move to")]
    dry_run: bool = False


class DivergenceOut(BaseModel):
    seq: int
    field: str
    recorded: str
    replayed: str


class UpgradeResult(BaseModel):
    run_id: str
    from_version: str
    to_version: str
    checked_seq: int
    ok: bool
    divergence: DivergenceOut | None = None
    outcome: str = Field("", description="`upgraded`, or why the run's owner refused")


class UpgradeResponse(BaseModel):
    runs: list[UpgradeResult]


@router.post(
    "/agents/{agent}/upgrade",
    response_model=UpgradeResponse,
    responses={409: {"description": "the API has no app"}, 422: {"description": "no version"}},
)
async def upgrade_agent(
    agent: Annotated[str, Path(max_length=200)], body: UpgradeRequest, who: OperatorKey, api: Api
) -> UpgradeResponse:
    """Replay each in-flight run of ``agent`` against ``to_version`` of the API's app, no
    provider reachable; unless ``dry_run``, move the runs that do not diverge (operator)."""
    if api.app is None:
        raise ApiError(409, "the API has no agent code to check with: serve it with --app")
    await api.views.refresh_hosted()
    try:
        checks = await upgrade_runs(
            api.client(who),
            api.app,
            agent,
            body.to_version,
            dry_run=body.dry_run,
            queries=api.queries,
        )
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    return UpgradeResponse(runs=[_result(c) for c in checks])


def _result(check: UpgradeCheck) -> UpgradeResult:
    d = check.divergence
    divergence = (
        None
        if d is None
        else DivergenceOut(**{k: getattr(d, k) for k in DivergenceOut.model_fields})
    )
    return UpgradeResult(
        run_id=check.run_id,
        from_version=check.from_version,
        to_version=check.to_version,
        checked_seq=check.checked_seq,
        ok=check.ok,
        divergence=divergence,
        outcome=check.outcome,
    )
