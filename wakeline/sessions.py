"""``Client`` methods for durable sessions (:mod:`wakeline.core.sessions`).

``client.start_run(agent, input, session="s-1")`` starts the next turn of session ``s-1``: the
client reads the session's turns from its views (folded from the log), takes the next turn
number ``k`` and publishes the start of run ``s-1:k`` (a forked session numbers its own runs
from 0: ``fork_session`` starts run ``new:0``).  Two clients that choose the same turn
publish the same run id: the worker starts the first command and refuses the other with a
``CommandRejected`` notice ("turn k of session s-1 is taken"): :meth:`SessionClient.turn_result`
of the loser's handle raises ``RunError`` where ``Client.result`` would return the winner's
output (and it, like :meth:`SessionClient.watch_turn`, ignores the refusal of an earlier start
of the same turn, which ``Client.result`` and ``Client.watch`` would end on).  A turn whose
previous turn has not ended is refused the same way, by the client and again by the worker
(the log decides).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from wakeline import jsonutil
from wakeline.core.sessions import (
    SessionError,
    apply_items,
    recorded_history,
    session_id_problem,
    turn_run_id,
)
from wakeline.forking import source_journal
from wakeline.projections.sessions import SessionRow, SessionTurn
from wakeline.schemas.commands import CommandRejected, StartRun
from wakeline.schemas.events import Fork, RunStarted, Session
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import Log
from wakeline.topics.signing import RecordSigner
from wakeline.topics.specs import Topics
from wakeline.watching import RunUpdate, watch_run

if TYPE_CHECKING:
    from wakeline.client import RunHandle
    from wakeline.projections.views import Views

__all__ = ["SessionClient", "SessionError", "SessionRow", "SessionTurn"]

_UNSET: Any = object()


def _checked(session: str) -> str:
    problem = session_id_problem(session)
    if problem is not None:
        raise SessionError(problem)
    return session


def _ended(row: SessionRow | None, before: int) -> SessionTurn | None:
    """Turn ``before - 1`` of ``row``, which must have ended (``None`` for turn 0)."""
    if before == 0:
        return None
    assert row is not None
    last = row.turns[before - 1]
    if last.status == "running":
        raise SessionError(
            f"turn {last.turn} of session {row.id} (run {last.run_id}) has not ended"
        )
    return last


class SessionClient:
    """The session methods of :class:`~wakeline.client.Client` (mixed into it)."""

    _log: Log
    _topics: Topics

    async def views(self) -> Views:
        raise NotImplementedError

    async def _start(self, payload: StartRun, run_id: str | None) -> RunHandle:
        raise NotImplementedError

    @property
    def signer(self) -> RecordSigner | None:
        raise NotImplementedError

    async def result(self, run_id: str, *, from_offset: int = 0) -> Any:
        raise NotImplementedError

    async def watch_turn(
        self, handle: RunHandle, *, deltas: bool = False
    ) -> AsyncIterator[RunUpdate]:
        """:meth:`Client.watch` of a turn this client started, without the notices from
        before its start (a turn sent again after a refusal: the refusal was not this start's)."""
        async for update in watch_run(
            self._log,
            self._topics,
            handle.run_id,
            handle.partition,
            deltas=deltas,
            signer=self.signer,
            notices_from=handle.notices_from,
        ):
            yield update

    async def turn_result(self, handle: RunHandle) -> Any:
        """Like :meth:`Client.result` for a turn this client started; a
        :class:`~wakeline.client.RunError` ("rejected") if the worker refused this start, or if
        another start took the turn (the run's ``RunStarted`` names another command)."""
        from wakeline.client import RunError

        async for update in self.watch_turn(handle):
            note = update.notice.payload if update.notice is not None else None
            if isinstance(note, CommandRejected) and note.command_id == handle.command_id:
                raise RunError(handle.run_id, "rejected", note.reason)
            started = update.event.payload if update.event is not None else None
            if isinstance(started, RunStarted):
                if started.command_id != handle.command_id:
                    taken = f"the turn was taken by another start (command {started.command_id})"
                    raise RunError(handle.run_id, "rejected", taken)
                break
        return await self.result(handle.run_id)  # it has events now: no old refusal ends it

    async def _start_turn_run(self, payload: StartRun, run_id: str) -> RunHandle:
        """Publish a turn's start; its handle knows where the notices were then."""
        count = await self._log.partition_count(self._topics.commands)
        partition = partition_for(run_id.encode(), count)
        notices_from = await self._log.end_offset(self._topics.notices, partition)
        handle = await self._start(payload, run_id)
        return dataclasses.replace(handle, notices_from=notices_from)

    async def session(self, session_id: str) -> SessionRow | None:
        """The session's turns in order (run, agent, status, input, output ...), those before
        a fork point the source session's; ``None`` for a session the log does not show."""
        return await self._session_row(_checked(session_id))

    async def session_items(self, session_id: str) -> list[Any]:
        """The session's items (:attr:`wakeline.core.sessions.SessionView.items`) as its last
        turn left them, or leaves them so far while it runs: read from that turn's journal."""
        row = await self.session(session_id)
        if row is None or not row.turns:
            return []
        journal = await source_journal(self._log, self._topics, row.turns[-1].run_id)
        return apply_items(recorded_history(journal)["items"], journal) if journal else []

    async def _session_row(self, session_id: str) -> SessionRow | None:
        """Where the session's turns are read (the client's views, caught up with the log)."""
        return (await self.views()).session(session_id)

    async def start_turn(
        self,
        payload: StartRun,
        session_id: str,
        row: SessionRow | None,
        run_id: str | None = None,
    ) -> RunHandle:
        """Start ``payload`` as the turn after the turns of ``row`` (the session as a view
        shows it; :meth:`Client.start_run` passes its own, caught up with the log).  A stale
        row makes the worker refuse the start: the turn is taken."""
        turn = 0 if row is None else row.next_turn
        _ended(row, turn)
        expected = turn_run_id(_checked(session_id), 0 if row is None else row.own_runs)
        if run_id is not None and run_id != expected:
            raise SessionError(f"turn {turn} of session {session_id} is run {expected}")
        started = dataclasses.replace(payload, session=Session(session_id, turn))
        return await self._start_turn_run(started, expected)

    async def fork_session(
        self,
        source: str,
        *,
        at_turn: int,
        session: str = "",
        input: Any = _UNSET,
        model: str = "",
        tenant: str = "",
    ) -> RunHandle:
        """Start a new session whose turns before ``at_turn`` are ``source``'s (its runs,
        reused: never run or billed again) with turn ``at_turn`` live: ``input`` (default: the
        source's turn ``at_turn`` input) to the agent of the source's previous turn, ``model``
        the model of that turn's calls if given.  ``session``: the new session's id (default
        ``{source}.f{8 hex}``); the turn is run ``{session}:0``.  :class:`SessionError` for a
        turn that cannot be forked."""
        row = await self.session(source)
        turns = () if row is None else row.turns
        if not 0 < at_turn <= len(turns):
            raise SessionError(
                f"session {source} has {len(turns)} turns: fork it at turn 1 to {len(turns)}"
            )
        previous = _ended(row, at_turn)
        assert previous is not None
        if input is _UNSET:
            if at_turn == len(turns):
                raise SessionError(f"session {source} has no turn {at_turn}: give its input")
            input = turns[at_turn].input
        new = _checked(session or f"{source}.f{uuid.uuid4().hex[:8]}")
        if await self.session(new) is not None:
            raise SessionError(f"session {new} exists already")
        payload = StartRun(
            previous.agent,
            jsonutil.dumps(input),
            tenant,
            fork=Fork(previous.run_id, 0, model),
            session=Session(new, at_turn),
        )
        return await self._start_turn_run(payload, turn_run_id(new, 0))
