"""Runs suspended on a shared budget, and the watch that wakes them when it has room again.

A run denied by a tenant or agent budget (:mod:`wakeline.ledger`) suspends with a
``BudgetExceeded`` event naming the reservation it was denied.  The worker remembers such runs
by ledger key.  It wakes them when the ledger fold sees a new limit for that key, and also when
reservations settle and leave room: each run whose reservation now fits under the limit (in run
id order, each taking its share of the room) is woken with the limit unchanged, ``by`` saying
the budget had room.  A woken run asks the ledger again; if another run took the room first it
is denied and waits again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from decimal import Decimal

from wakeline.core.activation import Completion
from wakeline.ledger import Ledger, TenantState, ledger_key
from wakeline.schemas.events import BudgetExceeded, RunStarted

Wake = Callable[[str, str, str, str], Awaitable[None]]
"""``wake(run_id, scope, new limit, set by)``."""

ROOM = "wakeline: reservations settled, the budget has room"
"""The ``by`` of a wake that no new limit caused."""


class BudgetWaits:
    """Ledger key -> the runs of this worker suspended on that shared budget."""

    def __init__(self) -> None:
        self._runs: dict[str, dict[str, Decimal]] = {}
        """Ledger key -> run id -> the reservation the run was denied."""

    def update(self, run_id: str, started: RunStarted, completion: Completion) -> None:
        """Record which shared budgets the run waits on after its last activation."""
        waiting: dict[str, Decimal] = {}
        for event in completion.waiting:
            p = event.payload
            if isinstance(p, BudgetExceeded) and p.scope in ("tenant", "agent"):
                name = started.tenant if p.scope == "tenant" else started.agent
                waiting[ledger_key(p.scope, name)] = _decimal(p.reservation)
        for key, runs in self._runs.items():
            if key not in waiting:
                runs.pop(run_id, None)
        for key, need in waiting.items():
            self._runs.setdefault(key, {})[run_id] = need

    @staticmethod
    def missed(
        started: RunStarted, completion: Completion, ledger: Ledger
    ) -> list[tuple[str, str, str]]:
        """``(scope, limit, by)`` of each shared budget the run waits on whose limit, as
        folded so far, is already above the one the run was denied under, or that has room
        for its reservation again: a raise or a settle folded while no worker had the run
        registered (it was being moved or resumed) would otherwise never wake it."""
        out: list[tuple[str, str, str]] = []
        for event in completion.waiting:
            p = event.payload
            if not isinstance(p, BudgetExceeded) or p.scope not in ("tenant", "agent"):
                continue
            name = started.tenant if p.scope == "tenant" else started.agent
            state = ledger.tenants.get(ledger_key(p.scope, name))
            if state is None:
                continue
            if state.limit is None or state.limit > _decimal(p.limit):
                out.append((p.scope, _limit_text(state), "ledger"))
            elif _fits(state, _decimal(p.reservation)):
                out.append((p.scope, _limit_text(state), ROOM))
        return out

    def waiting_on(self, key: str) -> list[str]:
        return sorted(self._runs.get(key, ()))

    def _with_room(self, ledger: Ledger) -> list[tuple[str, str, TenantState]]:
        """``(key, run id, state)`` of the waiting runs whose reservation fits now; they are
        forgotten until their next activation registers them again (no wake twice)."""
        out = []
        for key, runs in self._runs.items():
            state = ledger.tenants.get(key)
            if state is None:
                continue
            room = None if state.limit is None else state.limit - state.committed
            for run_id, need in sorted(runs.items()):
                if room is not None and (not need.is_finite() or need > room):
                    continue
                del runs[run_id]
                out.append((key, run_id, state))
                room = None if room is None else room - need
        return out

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
            for key, run_id, state in self._with_room(ledger):
                await wake(run_id, key.partition(":")[0], _limit_text(state), ROOM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)


def _fits(state: TenantState, need: Decimal) -> bool:
    if state.limit is None:
        return True
    return need.is_finite() and state.committed + need <= state.limit


def _limit_text(state: TenantState) -> str:
    return "Infinity" if state.limit is None else str(state.limit)


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError:
        return Decimal("Infinity")  # unreadable: never a reason to wake
