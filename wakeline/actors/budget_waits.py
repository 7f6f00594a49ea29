"""Runs suspended on a shared budget, and the watch that wakes them when its limit changes.

A run denied by a tenant or agent budget (:mod:`wakeline.ledger`) suspends with a
``BudgetExceeded`` event.  The worker remembers such runs by ledger key; when the ledger fold
sees a new limit for that key, every run of this worker waiting on it is woken.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from decimal import Decimal

from wakeline.core.activation import Completion
from wakeline.ledger import Ledger, ledger_key
from wakeline.schemas.events import BudgetExceeded, RunStarted

Wake = Callable[[str, str, str, str], Awaitable[None]]
"""``wake(run_id, scope, new limit, set by)``."""


class BudgetWaits:
    """Ledger key -> the runs of this worker suspended on that shared budget."""

    def __init__(self) -> None:
        self._runs: dict[str, set[str]] = {}

    def update(self, run_id: str, started: RunStarted, completion: Completion) -> None:
        """Record which shared budgets the run waits on after its last activation."""
        waiting: set[str] = set()
        for event in completion.waiting:
            p = event.payload
            if isinstance(p, BudgetExceeded) and p.scope in ("tenant", "agent"):
                name = started.tenant if p.scope == "tenant" else started.agent
                waiting.add(ledger_key(p.scope, name))
        for key, runs in self._runs.items():
            if key not in waiting:
                runs.discard(run_id)
        for key in waiting:
            self._runs.setdefault(key, set()).add(run_id)

    @staticmethod
    def missed(
        started: RunStarted, completion: Completion, ledger: Ledger
    ) -> list[tuple[str, str]]:
        """``(scope, limit)`` of each shared budget the run waits on whose limit, as folded
        so far, is already above the one the run was denied under: a raise folded while no
        worker had the run registered (it was being moved or resumed) would otherwise never
        wake it."""
        out: list[tuple[str, str]] = []
        for event in completion.waiting:
            p = event.payload
            if not isinstance(p, BudgetExceeded) or p.scope not in ("tenant", "agent"):
                continue
            name = started.tenant if p.scope == "tenant" else started.agent
            state = ledger.tenants.get(ledger_key(p.scope, name))
            if state is None:
                continue
            if state.limit is None or state.limit > _decimal(p.limit):
                out.append((p.scope, "Infinity" if state.limit is None else str(state.limit)))
        return out

    def waiting_on(self, key: str) -> list[str]:
        return sorted(self._runs.get(key, ()))

    async def watch(
        self, ledger: Ledger, partitions: int, stop: asyncio.Event, wake: Wake, every_s: float = 0.5
    ) -> None:
        """Fold the ledger until ``stop``; a new limit wakes the runs waiting on it."""
        while not stop.is_set():
            for partition in range(partitions):
                await ledger.catch_up(partition)
            while not ledger.limit_changes.empty():
                key, change = ledger.limit_changes.get_nowait()
                scope = key.partition(":")[0]
                for run_id in self.waiting_on(key):
                    await wake(run_id, scope, change.usd or "Infinity", change.by)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError:
        return Decimal("Infinity")  # unreadable: never a reason to wake
