"""Durable sessions: a conversation as one long-lived key, each turn a run.

Turn ``k`` of session ``S`` is the run ``S:k`` (:func:`turn_run_id`) whose ``RunStarted.session``
is ``Session(S, k)``.  A forked session's own runs are numbered from 0 too: ``S:n`` is its turn
``at_turn + n`` (its turns before ``at_turn`` are the source's runs).  What a turn's agent sees
of the earlier turns -- their inputs, outputs and the session's items -- is journaled in the
turn itself: the worker that starts it folds the previous turn's journal
(:func:`next_history`) and writes the result as the run's first step, ``session.history`` at
seq 1, before the agent runs.  The agent reads it as ``ctx.session`` (:class:`SessionView`),
so a replay reads the journal and never a projection or another run.

Items (a framework's conversation items, e.g. the OpenAI Agents SDK's session) are changed by
steps the turn journals (``session.add_items`` with the items, ``session.pop_item``,
``session.clear_session``, ``session.put_item`` with a keyed item); the next turn's history
applies them in the order they were requested.  Everything here is I/O-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wakeline import jsonutil
from wakeline.core.errors import WakelineError
from wakeline.core.ids import run_id_problem
from wakeline.schemas.events import (
    Event,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
    Session,
    StepCompleted,
    StepRequested,
)

if TYPE_CHECKING:
    from wakeline.core.context import Context

HISTORY_STEP = "session.history"
ADD_ITEMS = "session.add_items"
POP_ITEM = "session.pop_item"
CLEAR_SESSION = "session.clear_session"
PUT_ITEM = "session.put_item"
ITEM_STEPS = frozenset({ADD_ITEMS, POP_ITEM, CLEAR_SESSION, PUT_ITEM})
KEY = "wakeline.key"
"""The field of an item :meth:`SessionView.put_item` keeps under a key."""

JsonDict = dict[str, Any]


class SessionError(WakelineError, ValueError):
    """A session turn that cannot start or be read; the message says why."""


def turn_run_id(session: str, index: int) -> str:
    """The run id of the session's own run number ``index`` (its turn ``index`` unless the
    session was forked): ``"{session}:{index}"``."""
    return f"{session}:{index}"


def own_index(run_id: str, session: str) -> int | None:
    """``n`` if ``run_id`` is ``"{session}:{n}"`` (``n`` a number without leading zeros)."""
    head, _, tail = run_id.rpartition(":")
    if head != session or not tail.isdecimal() or tail != str(int(tail)):
        return None
    return int(tail)


def session_id_problem(session: str) -> str | None:
    """What is wrong with a session id (it must make valid run ids), or ``None``."""
    if not session or len(session) > 112 or run_id_problem(session) is not None:
        return (
            f"invalid session id {session[:120]!r}: 1 to 112 letters, digits or '._:-', "
            "starting with a letter or a digit"
        )
    return None


def empty_history() -> JsonDict:
    return {"turns": [], "items": []}


@dataclass(frozen=True, slots=True)
class Turn:
    """An earlier turn as a turn's agent sees it; ``status`` is ``completed``, ``failed`` or
    ``cancelled``; ``output`` is the agent's output (``None`` unless completed)."""

    turn: int
    run_id: str
    session: str
    input: Any
    output: Any
    status: str
    error: str | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Turn:
        return cls(**{name: data.get(name) for name in cls.__slots__})  # type: ignore[arg-type]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else jsonutil.dumps(value)


class SessionView:
    """``ctx.session``: the session of the running turn (``id``, ``turn``), its earlier turns
    (``history``) and its items, as journaled at the turn's start."""

    def __init__(self, ctx: Context, session: Session, history: Mapping[str, Any]) -> None:
        self._ctx = ctx
        self.id = session.id
        self.turn = session.turn
        self.history: tuple[Turn, ...] = tuple(Turn.of(t) for t in history["turns"])
        self._items: list[Any] = list(history["items"])

    @property
    def run_id(self) -> str:
        return self._ctx.run_id

    def messages(self) -> list[dict[str, str]]:
        """The completed earlier turns as a chat: a ``user`` message with each turn's input and
        an ``assistant`` message with its output (text as is, other JSON as JSON text)."""
        out: list[dict[str, str]] = []
        for turn in self.history:
            if turn.status == "completed":
                out.append({"role": "user", "content": _text(turn.input)})
                out.append({"role": "assistant", "content": _text(turn.output)})
        return out

    @property
    def items(self) -> list[Any]:
        """The session's items: those of the earlier turns, then this turn's changes."""
        return list(self._items)

    async def add_items(self, items: Sequence[Any]) -> None:
        """Append JSON ``items`` (journaled: the next turns see them, and a replay the
        journaled ones)."""
        added = jsonutil.loads(jsonutil.dumps(list(items)))
        self._items.extend(await self._ctx.step(ADD_ITEMS, lambda: added))

    def keyed(self, key: str) -> Any:
        """The value :meth:`put_item` last put under ``key`` (``None`` if none)."""
        return next((i["value"] for i in self._items if _key_of(i) == key), None)

    async def put_item(self, key: str, value: Any) -> None:
        """Keep JSON ``value`` as the session's one item under ``key`` (replacing the one
        put before): e.g. a framework's latest checkpoint."""
        item = {KEY: key, "value": jsonutil.loads(jsonutil.dumps(value))}
        _put(self._items, await self._ctx.step(PUT_ITEM, lambda: item))

    async def pop_item(self) -> Any:
        """Remove and return the latest item (``None`` when there is none)."""
        item = self._items.pop() if self._items else None
        await self._ctx.step(POP_ITEM, lambda: item)
        return item

    async def clear(self) -> None:
        """Remove every item."""
        self._items.clear()
        await self._ctx.step(CLEAR_SESSION, lambda: None)


def _key_of(item: Any) -> Any:
    return item.get(KEY) if isinstance(item, dict) else None


def _put(items: list[Any], item: Any) -> None:
    """Replace the item with ``item``'s key, or append it."""
    at = next((n for n, old in enumerate(items) if _key_of(old) == _key_of(item)), None)
    if at is None:
        items.append(item)
    else:
        items[at] = item


def _not_recorded(turn: int) -> JsonDict:
    if turn == 0:
        return empty_history()
    raise SessionError("a session turn's history is recorded by the worker that starts it")


async def load_session(ctx: Context, session: Session) -> SessionView:
    """The turn's first step: its history, read from the journal (see :func:`history_events`)."""
    history = await ctx.step(HISTORY_STEP, _not_recorded, session.turn)
    return SessionView(ctx, session, history)


def history_events(
    run_id: str, started: RunStarted, history: JsonDict, time_ms: int, writer: str
) -> list[Event]:
    """The start of a turn's journal: ``RunStarted``, then its history as step 1."""
    return [
        Event(run_id, 0, time_ms, writer, started),
        Event(run_id, 1, time_ms, writer, StepRequested(HISTORY_STEP)),
        Event(run_id, 2, time_ms, writer, StepCompleted(1, jsonutil.dumps(history))),
    ]


def turn_outcome(journal: Sequence[Event]) -> tuple[str, Any, str | None] | None:
    """``(status, output, error)`` of a run's journal, or ``None`` while it has not ended."""
    last = journal[-1].payload if journal else None
    if isinstance(last, RunCompleted):
        return "completed", jsonutil.loads(last.output), None
    if isinstance(last, RunFailed):
        return "failed", None, f"{last.error_type}: {last.message}"
    if isinstance(last, RunCancelled):
        return "cancelled", None, last.reason
    return None


def recorded_history(journal: Sequence[Event]) -> JsonDict:
    """The history a turn's journal recorded at its start (step 1)."""
    run_id = journal[0].run_id if journal else "?"
    step = journal[1].payload if len(journal) > 1 else None
    done = journal[2].payload if len(journal) > 2 else None
    if step != StepRequested(HISTORY_STEP) or not isinstance(done, StepCompleted):
        raise SessionError(f"run {run_id} has no recorded session history")
    history: JsonDict = jsonutil.loads(done.result)
    return history


def apply_items(items: list[Any], journal: Sequence[Event]) -> list[Any]:
    """``items`` changed by the journal's completed item steps, in the order requested."""
    names = {
        e.seq: e.payload.name
        for e in journal
        if isinstance(e.payload, StepRequested) and e.payload.name in ITEM_STEPS
    }
    results = {
        e.payload.step: e.payload.result
        for e in journal
        if isinstance(e.payload, StepCompleted) and e.payload.step in names
    }
    out = list(items)
    for seq in sorted(set(names) & set(results)):
        if names[seq] == ADD_ITEMS:
            out.extend(jsonutil.loads(results[seq]))
        elif names[seq] == POP_ITEM and out:
            out.pop()
        elif names[seq] == CLEAR_SESSION:
            out.clear()
        elif names[seq] == PUT_ITEM:
            _put(out, jsonutil.loads(results[seq]))
    return out


def next_history(journal: Sequence[Event], turn: int) -> JsonDict:
    """What turn ``turn`` sees: the history recorded in the journal of turn ``turn - 1`` plus
    that turn itself (it must have ended) and its item changes."""
    started = journal[0].payload if journal else None
    if not isinstance(started, RunStarted) or started.session is None:
        raise SessionError(f"turn {turn - 1} is not a session turn that has started")
    run_id = journal[0].run_id
    if started.session.turn != turn - 1:
        raise SessionError(f"run {run_id} is turn {started.session.turn}, not {turn - 1}")
    outcome = turn_outcome(journal)
    if outcome is None:
        raise SessionError(f"turn {turn - 1} ({run_id}) has not ended")
    status, output, error = outcome
    base = recorded_history(journal)
    record = {
        "turn": turn - 1,
        "run_id": run_id,
        "session": started.session.id,
        "input": jsonutil.loads(started.input),
        "output": output,
        "status": status,
        "error": error,
    }
    return {"turns": [*base["turns"], record], "items": apply_items(base["items"], journal)}
