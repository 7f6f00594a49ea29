"""Costs: tokens and USD by agent, tenant and model from the cost cube (``GET /v1/costs``,
filtered by agent, tenant and UTC days), and the rows of the costs projection by dimension,
e.g. by UTC day (``GET /v1/costs/{dimension}``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from wakeline.api.auth import AUTH_RESPONSES, ViewerKey
from wakeline.api.models import CostRows
from wakeline.api.state import Api
from wakeline.projections.rows import CostDimension, CostSummary

Day = Annotated[
    str | None,
    Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="a UTC date, yyyy-mm-dd (inclusive)"),
]

router = APIRouter(prefix="/v1", tags=["costs"], responses=AUTH_RESPONSES)


@router.get("/costs", response_model=CostSummary)
async def costs(
    _: ViewerKey,
    api: Api,
    agent: Annotated[str | None, Query(max_length=200)] = None,
    tenant: Annotated[str | None, Query(max_length=200)] = None,
    since_day: Day = None,
    until_day: Day = None,
) -> CostSummary:
    """Tokens and cost of the model calls made on the UTC days from ``since_day`` to
    ``until_day`` (inclusive) by runs of ``agent`` / ``tenant`` (viewer): in total, by agent,
    by tenant (``""`` is no tenant) and by ``provider/model``, with the runs started on those
    days.  Read from the cost cube (a few cells per day), never from the runs.  Costs are
    exact decimal text in USD."""
    return api.views.cost_summary(
        agent=agent, tenant=tenant, since_day=since_day, until_day=until_day
    )


@router.get(
    "/costs/{dimension}",
    response_model=CostRows,
    responses={422: {"description": "unknown dimension"}},
)
async def costs_by(
    dimension: Annotated[
        CostDimension,
        Path(description="agent, tenant, model, day, agent-day or tenant-day"),
    ],
    _: ViewerKey,
    api: Api,
    name: Annotated[
        str | None,
        Query(
            max_length=200,
            description="only the rows whose first name is this: an agent (agent, agent-day), "
            "a tenant (tenant, tenant-day; empty: no tenant), a provider (model) or a day",
        ),
    ] = None,
) -> CostRows:
    """Model calls, tokens and cost of every row of ``dimension``, in key order (viewer):
    completed calls, summed by the costs projection as they are folded from the log."""
    rows = api.views.costs(dimension, name)
    return CostRows(dimension=dimension, name=name, rows=rows)
