"""Shared budgets (per tenant, per agent): their state folded from the ledger topic by the
budgets projection -- limit, settled spend and the reservations in flight (viewer); and
setting a shared dollar limit, as ``wakeline budget set`` does (operator; the ledger records
the key's name as who set it, shown as ``limit_by``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from wakeline.api.auth import AUTH_RESPONSES, OperatorKey, ViewerKey
from wakeline.api.errors import ApiError
from wakeline.api.models import SharedBudgetList, SharedLimitRequest, SharedLimitSet
from wakeline.api.state import Api
from wakeline.ledger import Ledger, ledger_key
from wakeline.projections.rows import BudgetRow
from wakeline.schemas.budgets import SharedScope

router = APIRouter(prefix="/v1", tags=["budgets"], responses=AUTH_RESPONSES)

ScopeParam = Annotated[SharedScope, Path(description="tenant or agent")]
NameParam = Annotated[str, Path(min_length=1, max_length=200, description="its name")]


@router.get("/budgets", response_model=SharedBudgetList)
async def list_budgets(_: ViewerKey, api: Api) -> SharedBudgetList:
    """Every shared budget the ledger has records of, in ledger key order (viewer).  A tenant's
    spend is tracked even without a limit; an agent's once it has had one."""
    return SharedBudgetList(budgets=api.views.budgets())


@router.get(
    "/budgets/{scope}/{name:path}",
    response_model=BudgetRow,
    responses={404: {"description": "the ledger has no record of this budget"}},
)
async def get_budget(
    scope: ScopeParam,
    name: NameParam,
    _: ViewerKey,
    api: Api,
) -> BudgetRow:
    """One shared budget: limit, spent, reserved, the reservations in flight (viewer)."""
    key = ledger_key(scope, name)
    row = api.views.budget(key)
    if row is None:
        raise ApiError(404, f"no shared budget {key!r}: the ledger has no record of it")
    return row


@router.put(
    "/budgets/{scope}/{name:path}",
    status_code=202,
    response_model=SharedLimitSet,
    responses={422: {"description": "not a limit (a number >= 0, or null)"}},
)
async def set_budget(
    scope: ScopeParam,
    name: NameParam,
    body: SharedLimitRequest,
    who: OperatorKey,
    api: Api,
) -> SharedLimitSet:
    """Set (or, with ``null``, remove) a tenant's or an agent's shared dollar limit (operator).
    The ledger records the key's name as who set it; ``GET`` shows it as ``limit_by`` once the
    API's views folded it."""
    key = ledger_key(scope, name)
    await Ledger(api.log, api.topics.ledger, writer="api").set_limit(key, body.usd, who.name)
    usd = None if body.usd is None else str(body.usd)
    return SharedLimitSet(key=key, usd=usd, by=who.name)
