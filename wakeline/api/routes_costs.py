"""Costs: tokens and USD by agent, tenant and model, folded from the runs and steps views
(``GET /v1/costs``), and the rows of the costs projection by dimension, e.g. by UTC day
(``GET /v1/costs/{dimension}``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query

from wakeline.api.auth import AUTH_RESPONSES, ViewerKey
from wakeline.api.models import CostLine, CostRows, Costs
from wakeline.api.routes_runs import SinceMs, UntilMs
from wakeline.api.state import Api
from wakeline.projections.rows import CostDimension, RunRow, StepRow, Tokens
from wakeline.projections.runs import decimal_text

router = APIRouter(prefix="/v1", tags=["costs"], responses=AUTH_RESPONSES)


@dataclass
class _Sum:
    runs: set[str] = field(default_factory=set)
    model_calls: int = 0
    tokens: Tokens = field(default_factory=Tokens)
    cost: Decimal = Decimal(0)
    unpriced: int = 0

    def add(
        self, run_id: str, calls: int, tokens: Tokens | None, cost: str | None, unpriced: int
    ) -> None:
        self.runs.add(run_id)
        self.model_calls += calls
        if tokens is not None:
            self.tokens += tokens
        if cost is not None:
            self.cost += Decimal(cost)
        self.unpriced += unpriced

    def line(self, key: str) -> CostLine:
        return CostLine(
            key=key,
            runs=len(self.runs),
            model_calls=self.model_calls,
            tokens=self.tokens,
            cost_usd=decimal_text(self.cost),
            unpriced_calls=self.unpriced,
        )


def _lines(groups: dict[str, _Sum]) -> list[CostLine]:
    """Most expensive first, then by key."""
    ordered = sorted(groups.items(), key=lambda kv: (-kv[1].cost, kv[0]))
    return [total.line(key) for key, total in ordered]


@router.get("/costs", response_model=Costs)
async def costs(
    _: ViewerKey,
    api: Api,
    agent: Annotated[str | None, Query(max_length=200)] = None,
    tenant: Annotated[str | None, Query(max_length=200)] = None,
    since_ms: SinceMs = None,
    until_ms: UntilMs = None,
) -> Costs:
    """Tokens and cost of the matching runs (viewer): in total, by agent, by tenant (``""`` is
    no tenant) and by ``provider/model``.  Costs are exact decimal text in USD."""
    total = _Sum()
    by_agent: dict[str, _Sum] = {}
    by_tenant: dict[str, _Sum] = {}
    by_model: dict[str, _Sum] = {}
    runs = api.queries.all_runs(agent=agent, tenant=tenant, since_ms=since_ms, until_ms=until_ms)
    for row in runs:
        _add_run(row, total, by_agent, by_tenant)
        for step in api.queries.steps(row.run_id):
            if step.kind == "model":
                _add_model_call(by_model, row.run_id, step)
    return Costs(
        total=total.line("total"),
        by_agent=_lines(by_agent),
        by_tenant=_lines(by_tenant),
        by_model=_lines(by_model),
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


def _add_run(
    row: RunRow, total: _Sum, by_agent: dict[str, _Sum], by_tenant: dict[str, _Sum]
) -> None:
    args = (row.run_id, row.model_calls, row.tokens, row.cost_usd, row.unpriced_calls)
    total.add(*args)
    by_agent.setdefault(row.agent, _Sum()).add(*args)
    by_tenant.setdefault(row.tenant, _Sum()).add(*args)


def _add_model_call(by_model: dict[str, _Sum], run_id: str, step: StepRow) -> None:
    """Every requested call counts; tokens and cost once it completed (as the runs view)."""
    key = f"{step.provider or ''}/{step.model or ''}"
    unpriced = 1 if step.usage is not None and step.cost_usd is None else 0
    by_model.setdefault(key, _Sum()).add(run_id, 1, step.usage, step.cost_usd, unpriced)
