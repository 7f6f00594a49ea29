"""Starting a session turn (:mod:`wakeline.core.sessions`): check the turn and record what the
agent sees of the earlier ones.

The session's own run ``S:n`` follows ``S:n-1`` (``S:0`` follows nothing, or for a forked
session the run ``Fork.source`` names with ``Fork.seq`` 0), which must have ended and be turn
``Session.turn - 1``.  The worker reads that run's journal -- from its journal store if it
holds the run ended, else from the events topic, whichever partition it is on (as a fork
reads its source) -- folds its history and writes it into the new turn's journal at seq 1.  A
turn that is taken (its run exists) or that cannot start yet is refused with a
``CommandRejected`` notice; the command can be sent again once the previous turn has ended.
"""

from __future__ import annotations

from wakeline.core.sessions import (
    JsonDict,
    SessionError,
    empty_history,
    history_events,
    next_history,
    own_index,
    session_id_problem,
    turn_run_id,
)
from wakeline.forking import source_journal
from wakeline.projections.journal import JournalProjection
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import Event, RunStarted
from wakeline.topics.port import Log
from wakeline.topics.specs import Topics


def is_turn_start(started: RunStarted) -> bool:
    """A new session turn (not a fork of a turn's run at a step, which copies its journal)."""
    return started.session is not None and (started.fork is None or started.fork.seq == 0)


def previous_turn(run_id: str, started: RunStarted) -> str | None:
    """The run id of the turn before ``started``'s (``None`` for a session's first turn)."""
    session = started.session
    assert session is not None
    if (problem := session_id_problem(session.id)) is not None:
        raise SessionError(problem)
    index = own_index(run_id, session.id)
    if index is None:
        raise SessionError(f"a turn of session {session.id} must be run {session.id}:<n>")
    if session.turn < index:  # its n-th own run is at least its turn n
        raise SessionError(f"run {run_id} cannot be turn {session.turn} of session {session.id}")
    if started.fork is not None:  # a forked session: its earlier turns are the source's
        if index != 0 or session.turn == 0:
            raise SessionError(f"a forked session starts with run {session.id}:0 at a turn > 0")
        return started.fork.source
    if index == 0 and session.turn != 0:
        raise SessionError(f"run {run_id} is the first turn of session {session.id}: turn 0")
    return None if index == 0 else turn_run_id(session.id, index - 1)


async def previous_journal(
    log: Log, topics: Topics, run_id: str, local: JournalProjection | None
) -> list[Event]:
    """The journal of ``run_id``: from the worker's journal store if it holds the run ended
    (an ended journal does not change), else read from the events topic."""
    if local is not None and local.is_finished(run_id):
        return [event_codec().decode(raw) for raw in local.load(run_id)]
    return await source_journal(log, topics, run_id)


async def turn_journal(
    log: Log,
    topics: Topics,
    run_id: str,
    started: RunStarted,
    time_ms: int,
    writer: str,
    local: JournalProjection | None = None,
) -> list[Event]:
    """The turn's journal before its agent runs; :class:`SessionError` if it cannot start.
    ``local``: the worker's journal store, where the previous turn is looked up first."""
    assert started.session is not None
    previous = previous_turn(run_id, started)
    history: JsonDict = empty_history()
    if previous is not None:
        journal = await previous_journal(log, topics, previous, local)
        if not journal:
            raise SessionError(
                f"session {started.session.id} has no turn {started.session.turn - 1} "
                f"(run {previous} has no events)"
            )
        history = next_history(journal, started.session.turn)
    return history_events(run_id, started, history, time_ms, writer)
