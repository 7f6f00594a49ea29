"""What a partition owner does with each job: a command record, a resume, a budget wake.

Every method runs inside the owner's serial job queue, so two jobs of one partition never
interleave (a budget wake and a command cannot both resume a run).  Log errors propagate to the
owner, which restarts the partition and reads the command again; only undecodable or invalid
input (and commands that fail for reasons of their own) go to the dead-letter topic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING

from wakeline.actors.commands import check_command, core_input
from wakeline.actors.run_actor import RunActor
from wakeline.actors.session_start import is_turn_start, turn_journal
from wakeline.actors.upgrades import upgrade
from wakeline.core.activation import Activation, Completion, Drifted, RaiseLimit, Recover, Start
from wakeline.core.ids import run_id_problem
from wakeline.core.run_core import RunCore
from wakeline.core.sessions import SessionError
from wakeline.core.versions import run_agent, start_problem, unhosted, versioned
from wakeline.forking import ForkError, Recorded, fork_journal, recorded_tools, source_journal
from wakeline.schemas.codec import DecodeError, command_codec, event_codec
from wakeline.schemas.commands import (
    Command,
    CommandRejected,
    ResumeRun,
    RunDrifted,
    RunResumed,
    StartRun,
    UpgradeRun,
)
from wakeline.schemas.events import Event, RunStarted
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import LogError, OffsetCommit, Record

if TYPE_CHECKING:
    from wakeline.actors.owner import BudgetWake, PartitionOwner

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, owner: PartitionOwner) -> None:
        self._owner = owner
        self._s = owner.shared

    @property
    def owner(self) -> PartitionOwner:
        return self._owner

    # -- commands -------------------------------------------------------------------------
    async def command(self, record: Record) -> None:
        s = self._s
        commit = OffsetCommit(s.group, record.topic, record.partition, record.offset + 1)
        try:
            command = command_codec().decode(record.value)
        except DecodeError as exc:
            problem = f"undecodable command: {exc}"
            await s.outputs.dead_letter(record, problem)
            run_id = _run_key(record)
            if run_id is not None:  # whoever waits on the run learns why nothing happens
                await s.outputs.notice(run_id, CommandRejected("", problem))
            await self._commit_only(commit)
            return
        with s.telemetry.process(s.log.system, record, s.group, command.run_id, command.type):
            await self._checked(command, record, commit)

    async def _checked(self, command: Command, record: Record, commit: OffsetCommit) -> None:
        problem = self._check(command, record)
        if problem is not None:
            await self._reject(record, command, problem, commit)
            return
        try:
            await self._apply(command, commit)
        except LogError:
            raise  # the owner restarts the partition; the command is read again
        except Exception as exc:
            log.exception("command %s failed", command.command_id)
            reason = f"command failed: {type(exc).__name__}: {exc}"
            await self._reject(record, command, reason, commit)

    async def _reject(
        self, record: Record, command: Command, problem: str, commit: OffsetCommit
    ) -> None:
        await self._s.outputs.dead_letter(record, problem)
        await self._s.outputs.notice(command.run_id, CommandRejected(command.command_id, problem))
        await self._commit_only(commit)

    def _check(self, command: Command, record: Record) -> str | None:
        if record.key != command.run_id.encode():
            return f"record key {record.key!r} does not match run id {command.run_id!r}"
        if partition_for(record.key, self._s.partitions) != record.partition:
            return f"run {command.run_id} belongs to another partition"
        payload, limit = command.payload, self._s.max_input_bytes
        if isinstance(payload, StartRun) and (problem := run_id_problem(command.run_id)):
            return problem
        if isinstance(payload, StartRun) and len(payload.input.encode()) > limit:
            size = len(payload.input.encode())
            return f"input of {size} bytes exceeds the limit of {limit} bytes"
        return check_command(payload)

    async def _apply(self, command: Command, commit: OffsetCommit) -> None:
        run_id, payload = command.run_id, command.payload
        journal = self._s.journal
        if isinstance(payload, StartRun):
            if run_id in self._owner.actors or journal.has_run(run_id):
                await self._duplicate_start(command, payload, commit)
                return
            await self._start(command, payload, commit)
            return
        if isinstance(payload, UpgradeRun):
            await upgrade(self, command, payload, commit)
            return
        if isinstance(payload, ResumeRun):
            if run_id not in self._owner.actors and self.is_open(run_id):
                await self.resume(run_id, commit, "resume command")
                return
            await self._settle_unknown(command, commit)
            return
        actor = await self._loaded(run_id, f"loaded for {command.type}")
        if actor is None and (problem := self._unhosted(run_id)) is not None:
            await self.refuse(command, f"run {run_id}: {problem}", commit)
            return
        if actor is None:
            await self._settle_unknown(command, commit)
            return
        s = self._s
        try:
            await actor.command(core_input(command), commit)
        except LookupError as exc:  # no such gate, or the run ended just before
            await s.outputs.notice(run_id, CommandRejected(command.command_id, str(exc)))
            await self._commit_only(commit)

    async def _duplicate_start(
        self, command: Command, payload: StartRun, commit: OffsetCommit
    ) -> None:
        """A start of a run that exists: nothing to do, unless it is another command for a
        session turn that is taken (two clients chose the same turn)."""
        raw = self._s.journal.raw(command.run_id, 0)
        first = event_codec().decode(raw).payload if raw is not None else None
        if payload.session is None or not isinstance(first, RunStarted):
            await self._commit_only(commit)
        elif first.command_id != command.command_id:
            turn, session = payload.session.turn, payload.session.id
            taken = f"turn {turn} of session {session} is taken (run {command.run_id})"
            await self.refuse(command, taken, commit)
        else:
            await self._commit_only(commit)

    async def _loaded(self, run_id: str, reason: str) -> RunActor | None:
        """The run's live actor, resumed from the journal if the run is open but unloaded."""
        actor = self._owner.actors.get(run_id)
        if actor is None and self.is_open(run_id):
            await self.resume(run_id, None, reason)
            actor = self._owner.actors.get(run_id)
        return actor

    def _unhosted(self, run_id: str) -> str | None:
        """Why this worker does not drive an open run: its version is not hosted here."""
        pair = self._owner.versions.get(run_id)
        app = self._s.app
        if pair is None or app.get_agent(*pair) is not None:
            return None
        return unhosted(app, *pair)

    def is_open(self, run_id: str) -> bool:
        journal = self._s.journal
        return journal.has_run(run_id) and not journal.is_finished(run_id)

    async def _settle_unknown(self, command: Command, commit: OffsetCommit) -> None:
        if not self._s.journal.has_run(command.run_id):
            problem = f"unknown run {command.run_id}"
            await self._s.outputs.notice(
                command.run_id, CommandRejected(command.command_id, problem)
            )
        await self._commit_only(commit)

    async def refuse(self, command: Command, problem: str, commit: OffsetCommit) -> None:
        """A well-formed command that cannot be carried out: a notice, nothing dead-lettered."""
        await self._s.outputs.notice(command.run_id, CommandRejected(command.command_id, problem))
        await self._commit_only(commit)

    async def _commit_only(self, commit: OffsetCommit) -> None:
        await self._owner.append_events(self._owner.partition, [], commit)

    # -- starting and resuming runs ---------------------------------------------------------
    async def _start(self, command: Command, payload: StartRun, commit: OffsetCommit) -> None:
        s = self._s
        started = RunStarted(
            payload.agent,
            payload.input,
            payload.tenant,
            command.command_id,
            payload.budget,
            payload.fork,
            payload.version,
            session=payload.session,
        )
        if (problem := start_problem(s.app, started)) is not None:
            await self.refuse(command, problem, commit)  # nothing started: say so
            return
        if is_turn_start(started):
            await self._start_turn(command, versioned(s.app, started), commit)
            return
        if started.fork is not None:
            await self._start_fork(command, versioned(s.app, started), commit)
            return
        core = RunCore(command.run_id, s.app)
        first = core.activate(Activation(Start(started), s.now_ms(), s.worker_id))
        await self._launch(core, first.events[0], first, commit)

    async def _start_fork(
        self, command: Command, started: RunStarted, commit: OffsetCommit
    ) -> None:
        """A fork: its journal before the fork point is the source's (appended with the
        events the agent goes on to produce live, in one append); see :mod:`wakeline.forking`."""
        s, run_id = self._s, command.run_id
        assert started.fork is not None
        try:
            source = await source_journal(s.log, s.topics, started.fork.source)
            journal = fork_journal(run_id, started, source)
        except ForkError as exc:
            await self.refuse(command, str(exc), commit)
            return
        await self._start_from(command, journal, commit, await self._recorded(started, source))

    async def _start_turn(
        self, command: Command, started: RunStarted, commit: OffsetCommit
    ) -> None:
        """A session turn: its journal starts with the earlier turns' history (step 1), see
        :mod:`wakeline.actors.session_start`."""
        s = self._s
        try:
            journal = await turn_journal(
                s.log, s.topics, command.run_id, started, s.now_ms(), s.worker_id, s.journal
            )
        except SessionError as exc:
            await self.refuse(command, str(exc), commit)
            return
        await self._start_from(command, journal, commit, None)

    async def _start_from(
        self,
        command: Command,
        journal: list[Event],
        commit: OffsetCommit,
        recorded: Recorded | None,
    ) -> None:
        """Start a run whose journal begins with ``journal`` (appended with the events the
        agent goes on to produce live, in one append)."""
        s = self._s
        core = RunCore(command.run_id, s.app, journal=journal)
        first = core.activate(Activation(Recover(), s.now_ms(), s.worker_id))
        if isinstance(first.status, Drifted):  # the code no longer asks what the source did
            core.close()
            await self.refuse(command, str(first.status.error), commit)
            return
        whole = dataclasses.replace(first, events=(*journal, *first.events))
        await self._launch(core, journal[0], whole, commit, recorded)

    async def resume(self, run_id: str, commit: OffsetCommit | None, reason: str) -> None:
        """Load an open run from its whole journal and continue it."""
        s, partition = self._s, self._owner.partition
        events = await s.journal_sync.load(run_id, partition)
        pair = run_agent(events)
        if pair is not None:
            self._owner.versions[run_id] = pair  # announced: this partition needs it
            if (problem := self._unhosted(run_id)) is not None:
                log.warning("run %s left untouched: %s", run_id, problem)
                if commit is not None:
                    await self._commit_only(commit)
                return
        core = RunCore(run_id, s.app, journal=events)
        first = core.activate(Activation(Recover(), s.now_ms(), s.worker_id))
        if isinstance(first.status, Drifted):
            drift = first.status.error
            log.error("%s", drift)
            await s.outputs.notice(
                run_id, RunDrifted(drift.seq, drift.recorded, drift.requested, str(drift))
            )
            if commit is not None:
                await self._commit_only(commit)
            return
        await s.outputs.notice(run_id, RunResumed(len(events), reason))
        for effect in first.in_doubt:
            log.warning("run %s: tool call at seq %s is in doubt; not re-run", run_id, effect.seq)
        recorded = await self._recorded(events[0].payload)
        await self._launch(core, events[0], first, commit, recorded)

    async def _recorded(
        self, started: object, source: list[Event] | None = None
    ) -> Recorded | None:
        """What a fork with ``tools="recorded"`` serves, from its source's journal (read
        again when not given: a resumed fork)."""
        fork = started.fork if isinstance(started, RunStarted) else None
        if fork is None or fork.tools != "recorded":
            return None
        if source is None:
            source = await source_journal(self._s.log, self._s.topics, fork.source)
        return recorded_tools(source, fork.seq)

    async def _launch(
        self,
        core: RunCore,
        started: Event,
        first: Completion,
        commit: OffsetCommit | None,
        recorded: Recorded | None = None,
    ) -> None:
        if isinstance(started.payload, RunStarted):  # announced until the run ends
            self._owner.versions.setdefault(
                core.run_id, (started.payload.agent, started.payload.version)
            )
        actor = RunActor(core, started, self._owner.partition, self._owner, recorded)
        await actor.start(first, commit)  # raises if the append failed: no actor is kept
        self._owner.register(actor)

    # -- budget wakes -----------------------------------------------------------------------
    async def budget_wake(self, wake: BudgetWake) -> None:
        """A shared budget was raised: move a run waiting on it on."""
        actor = await self._loaded(wake.run_id, f"{wake.scope} budget raised")
        if actor is None:
            return
        raised = RaiseLimit("usd", wake.limit, wake.by, scope=wake.scope)
        with contextlib.suppress(LookupError):
            await actor.command(raised, None)


def _run_key(record: Record) -> str | None:
    """The run id a record is keyed by, if its key is a valid run id."""
    try:
        run_id = (record.key or b"").decode()
    except UnicodeDecodeError:
        return None
    return run_id if run_id and run_id_problem(run_id) is None else None
