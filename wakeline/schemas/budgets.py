"""The names budgets are spoken of in: metrics and scopes, defined once.

A run's own budget (``scope`` ``run``) limits every :data:`BudgetMetric`; the shared budgets of
the ledger (:mod:`wakeline.ledger`) are per tenant or per agent (:data:`SharedScope`) and limit
``usd``.
"""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

BudgetMetric = Literal["usd", "tokens", "model_calls", "wall_time_ms"]
"""What a run budget limits: dollars, tokens, model calls, or wall-clock time."""

SharedScope = Literal["tenant", "agent"]
"""The scopes of the ledger's shared budgets (ledger keys ``tenant:<name>``, ``agent:<name>``)."""

BudgetScope = Literal["run", "tenant", "agent"]
"""Whose budget a call was stopped by: the run's own, or a shared one."""

METRICS: tuple[BudgetMetric, ...] = get_args(BudgetMetric)
SHARED_SCOPES: tuple[SharedScope, ...] = get_args(SharedScope)


def is_metric(value: str) -> TypeGuard[BudgetMetric]:
    return value in METRICS


def is_shared_scope(value: str) -> TypeGuard[SharedScope]:
    return value in SHARED_SCOPES
