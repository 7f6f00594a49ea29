"""The sessions projection: every session's turns, folded from the events topic.

Keys:

* ``session/<session id>/<turn:010d>`` -> JSON turn row (see :func:`_turn_row`): the turn's
  run, agent, input and, once it ended, its status, output or error;
* ``sessionrun/<run id>`` -> ``{"session", "turn"}``: the turn a run is (its terminal event
  updates that row).

A run is a turn only if its id is one of the session's (``S:n``, :func:`~wakeline.core.
sessions.turn_run_id`); a fork of a turn's run at a step is not.  A forked session's first own turn
names the run it follows (``previous``); :func:`session` resolves the turns before it from
the source session at query time, so the fold never depends on the order partitions are read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from wakeline import jsonutil
from wakeline.core.sessions import own_index, turn_outcome
from wakeline.projections import EVENTS
from wakeline.projections.store import BatchView, Decoded, JsonObject, ProjectionStore, load_json
from wakeline.schemas.events import Event, RunCancelled, RunCompleted, RunFailed, RunStarted
from wakeline.topics.port import Record

_TERMINAL = (RunCompleted, RunFailed, RunCancelled)


def turns_prefix(session: str) -> bytes:
    return f"session/{session}/".encode()


def turn_key(session: str, turn: int) -> bytes:
    return turns_prefix(session) + f"{turn:010d}".encode()


def run_turn_key(run_id: str) -> bytes:
    return f"sessionrun/{run_id}".encode()


@dataclass(frozen=True, slots=True)
class SessionTurn:
    """A turn of a session: ``session`` is the session whose run it is (for a forked
    session's turns before its fork point: the source's); ``status`` ``running``,
    ``completed``, ``failed`` or ``cancelled``."""

    turn: int
    run_id: str
    session: str
    agent: str
    status: str
    input: Any
    output: Any
    error: str | None
    started_ms: int
    ended_ms: int | None


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A session: its turns in order (``turns[k].turn == k``); for a forked session the session
    whose run its first own turn follows (``forked_from``) and that turn (``fork_turn``),
    ``None`` for a session that was not forked."""

    id: str
    turns: tuple[SessionTurn, ...]
    forked_from: str | None = None
    fork_turn: int | None = None

    @property
    def next_turn(self) -> int:
        return len(self.turns)

    @property
    def own_runs(self) -> int:
        """How many of the turns are this session's own runs (``S:0`` .. ``S:n-1``)."""
        return sum(1 for t in self.turns if t.session == self.id)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _turn_row(event: Event, started: RunStarted) -> JsonObject:
    assert started.session is not None
    fork = started.fork
    return {
        "turn": started.session.turn,
        "run_id": event.run_id,
        "session": started.session.id,
        "agent": started.agent,
        "status": "running",
        "input": started.input,
        "output": None,
        "error": None,
        "started_ms": event.time_ms,
        "ended_ms": None,
        "previous": fork.source if fork is not None and fork.seq == 0 else None,
    }


class SessionsProjection:
    """Folds the events topic into ``session/...`` turn rows."""

    name = "sessions"
    topics = (EVENTS,)

    def apply(self, view: BatchView, record: Record, decoded: Decoded) -> None:
        if not isinstance(decoded, Event):
            return
        payload = decoded.payload
        if isinstance(payload, RunStarted) and payload.session is not None:
            session = payload.session
            if own_index(decoded.run_id, session.id) is None:
                return  # a fork of a turn's run at a step: not a turn of the session
            view.put_json(turn_key(session.id, session.turn), _turn_row(decoded, payload))
            turn_of = {"session": session.id, "turn": session.turn}
            view.put_json(run_turn_key(decoded.run_id), turn_of)
        elif isinstance(payload, _TERMINAL):
            where = view.get_json(run_turn_key(decoded.run_id))
            if where is None:
                return
            key = turn_key(where["session"], where["turn"])
            row = view.get_json(key)
            outcome = turn_outcome([decoded])
            if row is None or outcome is None:
                return
            row["status"], output, row["error"] = outcome
            row["output"] = None if output is None else jsonutil.dumps(output)
            row["ended_ms"] = decoded.time_ms
            view.put_json(key, row)


def _turn(row: JsonObject) -> SessionTurn:
    output = row["output"]
    return SessionTurn(
        turn=row["turn"],
        run_id=row["run_id"],
        session=row["session"],
        agent=row["agent"],
        status=row["status"],
        input=jsonutil.loads(row["input"]),
        output=None if output is None else jsonutil.loads(output),
        error=row["error"],
        started_ms=row["started_ms"],
        ended_ms=row["ended_ms"],
    )


def _own_turns(store: ProjectionStore, session_id: str) -> list[JsonObject]:
    return [load_json(value) for _, value in store.scan(turns_prefix(session_id))]


def session(store: ProjectionStore, session_id: str, *, _depth: int = 0) -> SessionRow | None:
    """The session's turns, those before a fork point from its source; ``None`` for a session
    the log does not show yet."""
    own = _own_turns(store, session_id)
    if not own:
        return None
    first = own[0]
    if first["previous"] is None or _depth > 100:
        return SessionRow(session_id, tuple(_turn(r) for r in own))
    where = store.get_json(run_turn_key(first["previous"]))
    source = None if where is None else session(store, where["session"], _depth=_depth + 1)
    inherited = () if source is None else source.turns[: first["turn"]]
    forked_from = None if where is None else str(where["session"])
    turns = (*inherited, *(_turn(r) for r in own))
    return SessionRow(session_id, turns, forked_from, first["turn"])
