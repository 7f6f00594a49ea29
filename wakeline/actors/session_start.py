"""Starting a session turn (:mod:`wakeline.core.sessions`): check the turn and record what the
agent sees of the earlier ones.

Turn ``k`` of ``S`` must be the run ``S:k``; for ``k > 0`` the previous turn (``S:k-1``, or for
a forked session the run ``Fork.source`` names with ``Fork.seq`` 0) must have ended.  The worker
reads that run's journal from the events topic, whichever partition it is on (as a fork reads
its source), folds its history and writes it into the new turn's journal at seq 1.  A turn that
is taken (its run exists) or that cannot start yet is refused with a ``CommandRejected``
notice; the command can be sent again once the previous turn has ended.
"""

from __future__ import annotations

from wakeline.core.sessions import (
    JsonDict,
    SessionError,
    empty_history,
    history_events,
    next_history,
    session_id_problem,
    turn_run_id,
)
from wakeline.forking import source_journal
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
    if session.turn < 0:
        raise SessionError(f"turn {session.turn} of session {session.id} is not a turn number")
    if run_id != turn_run_id(session.id, session.turn):
        expected = turn_run_id(session.id, session.turn)
        raise SessionError(f"turn {session.turn} of session {session.id} must be run {expected}")
    if started.fork is not None:  # a forked session: its earlier turns are the source's
        if session.turn == 0:
            raise SessionError("a forked session starts at a turn after 0")
        return started.fork.source
    return None if session.turn == 0 else turn_run_id(session.id, session.turn - 1)


async def turn_journal(
    log: Log, topics: Topics, run_id: str, started: RunStarted, time_ms: int, writer: str
) -> list[Event]:
    """The turn's journal before its agent runs; :class:`SessionError` if it cannot start."""
    assert started.session is not None
    previous = previous_turn(run_id, started)
    history: JsonDict = empty_history()
    if previous is not None:
        journal = await source_journal(log, topics, previous)
        if not journal:
            raise SessionError(
                f"session {started.session.id} has no turn {started.session.turn - 1} "
                f"(run {previous} has no events)"
            )
        history = next_history(journal, started.session.turn)
    return history_events(run_id, started, history, time_ms, writer)
