"""A run that registers its wait on a shared budget after the limit was already raised, or after
settled reservations left room for it (folded while the run was being moved or resumed), is
woken at once."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from wakeline.actors.budget_waits import ROOM, BudgetWaits
from wakeline.core.activation import Completion, WaitingOnPeople
from wakeline.ledger import TenantState
from wakeline.schemas.events import BudgetExceeded, Event, RunStarted

STARTED = RunStarted("shopper", "1", tenant="acme")


def waiting_on(limit: str) -> Completion:
    exceeded = BudgetExceeded("model", "mock-1", "tenant", "usd", limit, "99", "2")
    event = Event("r", 5, 0, "w", exceeded)
    return Completion((), (), (), WaitingOnPeople(), (event,), {})


def ledger(limit: Decimal | None, spent: Decimal = Decimal(99)) -> Any:
    return SimpleNamespace(tenants={"tenant:acme": TenantState(limit=limit, spent=spent)})


def test_a_limit_raised_before_the_wait_was_registered_wakes_the_run() -> None:
    assert BudgetWaits.missed(STARTED, waiting_on("100"), ledger(Decimal(500))) == [
        ("tenant", "500", "ledger")
    ]
    assert BudgetWaits.missed(STARTED, waiting_on("100"), ledger(None)) == [
        ("tenant", "Infinity", "ledger")
    ]


def test_room_left_by_settled_reservations_wakes_the_run() -> None:
    """Denied a $2 reservation at $99 of $100: once only $98 is committed it fits again."""
    assert BudgetWaits.missed(STARTED, waiting_on("100"), ledger(Decimal(100), Decimal(98))) == [
        ("tenant", "100", ROOM)
    ]


def test_the_limit_the_run_was_denied_under_wakes_nothing() -> None:
    assert BudgetWaits.missed(STARTED, waiting_on("100"), ledger(Decimal(100))) == []
    assert BudgetWaits.missed(STARTED, waiting_on("100"), SimpleNamespace(tenants={})) == []  # type: ignore[arg-type]
