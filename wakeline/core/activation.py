"""What the driver gives a run's core (an :class:`Activation`) and what it gets back (a
:class:`Completion`).

An activation is one input -- a start, a recovery, a result, or a command -- with the time and
the writer it happens at, given once: every event it produces carries them.  The completion is
all the driver and replay read: the events to append, the effects to run once they are
durable, the calls found in doubt, and the run's status, one of a closed set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from wakeline.core.errors import NondeterminismError
from wakeline.schemas.budgets import BudgetMetric
from wakeline.schemas.events import Event, Resolution, RunStarted

# -- inputs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """A new run: journal ``RunStarted`` and run the agent to its first wait."""

    started: RunStarted


@dataclass(frozen=True, slots=True)
class Recover:
    """Replay the journal the core was created with, then continue live from its end.

    With ``reopen`` (a worker taking the run over) the calls left open are sent again, model
    calls as new attempts and non-idempotent tools as in doubt; without it (a replay of a run
    whose state was only dropped from memory) the core just catches up.
    """

    reopen: bool = True


@dataclass(frozen=True, slots=True)
class Deliver:
    """The result of an open call (one of the step kinds' result events)."""

    result: Any


@dataclass(frozen=True, slots=True)
class Cancel:
    reason: str
    by: str


@dataclass(frozen=True, slots=True)
class DecideGate:
    """Approve or reject an open gate: by name, or the seq of a step waiting for a person."""

    gate: str
    approved: bool
    by: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RaiseLimit:
    """Raise a limit the run waits on; the waiting call is checked again."""

    metric: str
    limit: str
    by: str
    scope: str = "run"


@dataclass(frozen=True, slots=True)
class DecideInDoubt:
    """RETRY an in-doubt tool call (same idempotency key), SUPPLY its result, or FAIL the run."""

    step: int
    resolution: Resolution
    result: str = ""
    by: str = ""


Command = Cancel | DecideGate | RaiseLimit | DecideInDoubt
Input = Start | Recover | Deliver | Command


@dataclass(frozen=True, slots=True)
class Activation:
    input: Input
    time_ms: int
    writer: str


# -- outputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Effect:
    """Something the driver must do once the events before it are durable: a call to run or
    a timer to fire (steps that wait for a person are not effects: see ``waiting``)."""

    seq: int
    request: Event
    call: Any = None
    """The live call object: a ModelRequest, a ToolSpec or a step function."""
    interrupted: tuple[int, ...] = ()
    """Model calls: the seqs of earlier attempts of this call that a crash interrupted (see
    ``ModelCallInterrupted``); their shared-budget reservations settle when this one does."""


@dataclass(frozen=True, slots=True)
class Live:
    """The run goes on: calls are in flight or timers pending."""


@dataclass(frozen=True, slots=True)
class WaitingOnPeople:
    """Every open step waits for a person: the run may be unloaded until a command arrives."""


@dataclass(frozen=True, slots=True)
class Ended:
    terminal: Event


@dataclass(frozen=True, slots=True)
class Drifted:
    """Replay found code that asks for something else than the journal recorded."""

    error: NondeterminismError
    diverged: Event | None
    """The event the code produced where it parted from the journal, if it produced one."""


Status = Live | WaitingOnPeople | Ended | Drifted


@dataclass(frozen=True, slots=True)
class Completion:
    events: tuple[Event, ...]
    """New events, to append before any effect runs."""
    effects: tuple[Effect, ...]
    in_doubt: tuple[Effect, ...]
    """Open calls of non-idempotent tools found by a recovery: never re-run automatically."""
    status: Status
    waiting: tuple[Event, ...]
    """The open steps that wait for a person (gates, denials, budgets, in-doubt calls)."""
    spent: Mapping[BudgetMetric, Decimal]
    """The run budget's spend so far, per metric."""
    replayed: tuple[Event, ...] = ()
    """A recovery: the events the code re-produced while it replayed the journal."""

    @property
    def finished(self) -> bool:
        return isinstance(self.status, Ended | Drifted)


class Outbox:
    """What one activation of a core produces, gathered as it goes (see ``RunCore``)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.effects: list[Effect] = []
        self.in_doubt: list[Effect] = []
        self.replayed: list[Event] = []
