"""The worker: the driver that owns the log, the journal store, providers and tools.

A worker is a member of the consumer group on the commands topic.  For each partition it is
assigned it opens the fenced writer of that partition (fencing any older owner), catches its
journal store up to the end of the events partition, and resumes every run of the partition
that has not ended.  Then it applies commands in offset order; each command's events and the
commands offset that covers it are appended in one atomic unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from wakeline.actors.budget_waits import BudgetWaits
from wakeline.actors.commands import check_command, command_fn
from wakeline.actors.core import RunCore, Transition
from wakeline.actors.lag import LagProbe
from wakeline.actors.outputs import SideOutputs
from wakeline.actors.run_actor import RunActor
from wakeline.app import App
from wakeline.deltas import DeltaPublisher
from wakeline.ledger import Ledger
from wakeline.projections import EVENTS, NOTICES
from wakeline.projections.journal import JournalProjection
from wakeline.projections.runner import catch_up
from wakeline.projections.store import ProjectionStore
from wakeline.providers.base import DeltaSink
from wakeline.schemas.codec import DecodeError, command_codec, event_codec
from wakeline.schemas.commands import (
    Command,
    CommandRejected,
    ResumeRun,
    RunDrifted,
    RunResumed,
    StartRun,
)
from wakeline.schemas.events import Event, RunStarted
from wakeline.telemetry import Telemetry, default_telemetry
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import (
    FencedError,
    Log,
    OffsetCommit,
    OutRecord,
    PartitionWriter,
    Record,
)
from wakeline.topics.specs import DEFAULT_TOPICS, Topics

log = logging.getLogger(__name__)

DEFAULT_GROUP = "wakeline-workers"


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        app: App,
        log: Log,
        *,
        state_dir: Path,
        topics: Topics = DEFAULT_TOPICS,
        group: str = DEFAULT_GROUP,
        worker_id: str | None = None,
        session_timeout_s: float = 10.0,
        max_input_bytes: int = 256 * 1024,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._app = app
        self.telemetry = telemetry if telemetry is not None else default_telemetry()
        self._log = log
        self._topics = topics
        self._group = group
        self._worker_id = worker_id or default_worker_id()
        self._session_timeout_s = session_timeout_s
        self._max_input_bytes = max_input_bytes
        self._clock = clock
        self._store = ProjectionStore(state_dir)
        self._journal = JournalProjection(self._store)
        self._topic_names = {EVENTS: topics.events, NOTICES: topics.notices}
        self._writers: dict[int, PartitionWriter] = {}
        self._actors: dict[str, RunActor] = {}
        self._partitions = 0
        self._ledger = Ledger(log, topics.ledger, writer=self._worker_id)
        self._deltas = DeltaPublisher(log, topics.deltas, writer=self._worker_id, clock=clock)
        self._budget_waits = BudgetWaits()
        self._outputs = SideOutputs(log, topics, self._worker_id, self.telemetry, self.now_ms)
        self._lag = LagProbe(log, topics.commands, group, self.telemetry)
        self._membership = asyncio.Lock()
        self._resetting: set[int] = set()
        self._background: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()
        """Set once the worker holds partitions and has resumed their open runs."""

    # -- ActorHost ------------------------------------------------------------------------
    @property
    def worker_id(self) -> str:
        return self._worker_id

    @property
    def app(self) -> App:
        return self._app

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    def on_transition(self, actor: RunActor, transition: Transition) -> None:
        self._budget_waits.update(actor.run_id, actor.core)

    async def _wake(self, run_id: str, scope: str, limit: str, by: str) -> None:
        partition = partition_for(run_id.encode(), self._partitions)
        if partition not in self._writers:
            return
        actor = self._actors.get(run_id)
        if actor is None and self._is_open(run_id):
            await self._resume(run_id, partition, None, f"{scope} budget raised")
            actor = self._actors.get(run_id)
        if actor is None:
            return
        now, who = self.now_ms(), self._worker_id

        def raise_shared(core: RunCore) -> Transition:
            return core.raise_budget("usd", limit, by, now, who, scope=scope)

        with contextlib.suppress(LookupError):
            await actor.command(raise_shared, None)

    def delta_sink(self, run_id: str, seq: int) -> DeltaSink | None:
        return self._deltas.sink(run_id, seq)

    async def append_events(
        self, partition: int, events: list[Event], commit: OffsetCommit | None = None
    ) -> None:
        writer = self._writers.get(partition)
        if writer is None:
            raise FencedError(f"partition {partition} is not assigned to {self._worker_id}")
        codec = event_codec()
        topic, group = self._topics.events, commit.group if commit else ""
        with self.telemetry.send(self._log.system, topic, partition, events, group) as send:
            out = [
                OutRecord(
                    e.run_id.encode(),
                    codec.encode(e),
                    (("type", e.type.encode()), *send.headers(e.run_id)),
                )
                for e in events
            ]
            offsets = await writer.append(topic, out, commit=commit)
            send.appended(offsets)
        folded = [
            Record(self._topics.events, partition, off, rec.key, rec.value, rec.headers)
            for off, rec in zip(offsets, out, strict=True)
        ]
        if folded:
            self._store.fold(folded, [self._journal], topic_names=self._topic_names)

    def actor_stopped(self, actor: RunActor, error: BaseException | None) -> None:
        if self._actors.get(actor.run_id) is actor:
            del self._actors[actor.run_id]
        if error is None:
            return
        if isinstance(error, FencedError):
            log.warning("run %s: partition %s fenced: %s", actor.run_id, actor.partition, error)
            return
        log.error(
            "run %s stopped on error; partition %s restarts from the log",
            actor.run_id,
            actor.partition,
            exc_info=error,
        )
        self._schedule_reset(actor.partition)

    def _schedule_reset(self, partition: int) -> None:
        """Restart a partition as if it were re-assigned: a new writer (the old one may be
        unusable, e.g. a Kafka transaction that timed out), journals caught up, runs resumed."""
        if partition in self._resetting:
            return
        self._resetting.add(partition)
        task = asyncio.ensure_future(self._reset_partition(partition))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reset_partition(self, partition: int) -> None:
        try:
            await asyncio.sleep(1.0)
            async with self._membership:
                if partition in self._writers:
                    await self._revoke(frozenset({partition}))
                    await self._assign(frozenset({partition}))
        except Exception:
            log.exception("partition %s could not restart; retrying", partition)
            self._resetting.discard(partition)
            self._schedule_reset(partition)
            return
        self._resetting.discard(partition)

    # -- AssignmentListener ----------------------------------------------------------------
    async def on_assigned(self, partitions: frozenset[int]) -> None:
        async with self._membership:
            await self._assign(partitions)

    async def on_revoked(self, partitions: frozenset[int]) -> None:
        async with self._membership:
            await self._revoke(partitions)

    async def _assign(self, partitions: frozenset[int]) -> None:
        for partition in sorted(partitions):
            self._writers[partition] = await self._log.writer(
                f"{self._group}.p{partition}", partition
            )
            await catch_up(
                self._log,
                self._store,
                [self._journal],
                topic_names=self._topic_names,
                partitions=[partition],
            )
            for run_id in self._journal.open_runs(partition):
                await self._resume(run_id, partition, None, "assigned")
        log.info("%s assigned %s", self._worker_id, sorted(partitions))
        self.telemetry.rebalance("assign", len(partitions))
        if partitions:
            self.ready.set()

    async def _revoke(self, partitions: frozenset[int]) -> None:
        doomed = [a for a in self._actors.values() if a.partition in partitions]
        await asyncio.gather(*(a.stop() for a in doomed))
        for actor in doomed:
            self._actors.pop(actor.run_id, None)
        for partition in partitions:
            writer = self._writers.pop(partition, None)
            if writer is not None:
                await writer.close()
        log.info("%s revoked %s", self._worker_id, sorted(partitions))
        self.telemetry.rebalance("revoke", len(partitions))

    # -- main loop -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume commands until ``stop`` is set, then leave the group at once."""
        self._partitions = await self._log.partition_count(self._topics.commands)
        consumer = self._log.consumer(
            self._group, self._topics.commands, self, session_timeout_s=self._session_timeout_s
        )
        ledger_partitions = await self._log.partition_count(self._topics.ledger)
        limits = asyncio.create_task(
            self._budget_waits.watch(self._ledger, ledger_partitions, stop, self._wake),
            name="budget-limits",
        )
        lag = asyncio.create_task(
            self._lag.run(stop, lambda: frozenset(self._writers), self.telemetry.lag_interval_s)
        )
        try:
            while not stop.is_set():
                records = await consumer.poll(0.1)
                for record in records:
                    await self._handle(record)
                    self._lag.handled(record.partition, record.offset)
                if limits.done():
                    limits.result()  # a failure of the ledger watcher stops the worker loudly
        finally:
            for task in (limits, lag):
                task.cancel()
            await asyncio.gather(limits, lag, return_exceptions=True)
            await consumer.close()
            self._store.close()
            self.telemetry.flush()

    def _is_open(self, run_id: str) -> bool:
        return self._journal.has_run(run_id) and not self._journal.is_finished(run_id)

    @property
    def running_runs(self) -> list[str]:
        return sorted(self._actors)

    # -- commands --------------------------------------------------------------------------
    async def _handle(self, record: Record) -> None:
        commit = OffsetCommit(self._group, record.topic, record.partition, record.offset + 1)
        try:
            command = command_codec().decode(record.value)
        except DecodeError as exc:
            await self._outputs.dead_letter(record, f"undecodable command: {exc}")
            await self._commit_only(record.partition, commit)
            return
        system, group = self._log.system, self._group
        with self.telemetry.process(system, record, group, command.run_id, command.type):
            await self._handle_command(command, record, commit)

    async def _handle_command(self, command: Command, record: Record, commit: OffsetCommit) -> None:
        problem = self._check(command, record)
        if problem is not None:
            await self._outputs.dead_letter(record, problem)
            await self._outputs.notice(command.run_id, CommandRejected(command.command_id, problem))
            await self._commit_only(record.partition, commit)
            return
        try:
            await self._apply(command, record.partition, commit)
        except FencedError:
            raise
        except Exception as exc:
            log.exception("command %s failed", command.command_id)
            await self._outputs.dead_letter(record, f"command failed: {type(exc).__name__}: {exc}")
            await self._commit_only(record.partition, commit)

    def _check(self, command: Command, record: Record) -> str | None:
        if record.key != command.run_id.encode():
            return f"record key {record.key!r} does not match run id {command.run_id!r}"
        if partition_for(record.key, self._partitions) != record.partition:
            return f"run {command.run_id} belongs to another partition"
        payload = command.payload
        if isinstance(payload, StartRun) and len(payload.input.encode()) > self._max_input_bytes:
            size = len(payload.input.encode())
            return f"input of {size} bytes exceeds the limit of {self._max_input_bytes} bytes"
        return check_command(payload)

    async def _apply(self, command: Command, partition: int, commit: OffsetCommit) -> None:
        run_id = command.run_id
        payload = command.payload
        actor = self._actors.get(run_id)
        if isinstance(payload, StartRun):
            if actor is not None or self._journal.has_run(run_id):
                await self._commit_only(partition, commit)  # a duplicate start: already running
                return
            await self._start(command, payload, partition, commit)
            return
        if isinstance(payload, ResumeRun):
            if actor is None and self._is_open(run_id):
                await self._resume(run_id, partition, commit, "resume command")
                return
            await self._settle_unknown(command, partition, commit)
            return
        if actor is None and self._is_open(run_id):
            await self._resume(run_id, partition, None, f"loaded for {command.type}")
            actor = self._actors.get(run_id)
        if actor is None:
            await self._settle_unknown(command, partition, commit)
            return
        try:
            await actor.command(command_fn(command, self.now_ms(), self._worker_id), commit)
        except LookupError as exc:
            await self._outputs.notice(run_id, CommandRejected(command.command_id, str(exc)))
            await self._commit_only(partition, commit)

    async def _settle_unknown(self, command: Command, partition: int, commit: OffsetCommit) -> None:
        if not self._journal.has_run(command.run_id):
            await self._outputs.notice(
                command.run_id, CommandRejected(command.command_id, f"unknown run {command.run_id}")
            )
        await self._commit_only(partition, commit)

    async def _start(
        self, command: Command, payload: StartRun, partition: int, commit: OffsetCommit
    ) -> None:
        core = RunCore(command.run_id, self._app)
        started = RunStarted(
            payload.agent, payload.input, payload.tenant, command.command_id, payload.budget
        )
        transition = core.begin(started, self.now_ms(), self._worker_id)
        actor = RunActor(core, partition, self)
        self._actors[command.run_id] = actor
        await actor.start(transition, commit)

    async def _resume(
        self, run_id: str, partition: int, commit: OffsetCommit | None, reason: str
    ) -> None:
        codec = event_codec()
        events = [codec.decode(raw) for raw in self._journal.load(run_id)]
        core = RunCore(run_id, self._app, journal=events)
        transition = core.recover(self.now_ms(), self._worker_id)
        if core.drift is not None:
            drift = core.drift
            log.error("%s", drift)
            await self._outputs.notice(
                run_id, RunDrifted(drift.seq, drift.recorded, drift.requested, str(drift))
            )
            if commit is not None:
                await self._commit_only(partition, commit)
            return
        await self._outputs.notice(run_id, RunResumed(len(events), reason))
        for effect in transition.in_doubt:
            log.warning("run %s: tool call at seq %s is in doubt; not re-run", run_id, effect.seq)
        actor = RunActor(core, partition, self)
        self._actors[run_id] = actor
        await actor.start(transition, commit)

    # -- side outputs ----------------------------------------------------------------------
    async def _commit_only(self, partition: int, commit: OffsetCommit) -> None:
        await self.append_events(partition, [], commit)
