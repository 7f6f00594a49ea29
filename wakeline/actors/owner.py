"""The owner of one assigned partition: its fenced writer, its journal, its runs, its jobs.

A worker holds one :class:`PartitionOwner` per partition the group assigned it, and only
routes to them.  An owner does everything of its partition in one serial job queue:

* **open** (the first job): open the partition's fenced writer (fencing any older owner), make
  the journal store agree with the log up to its end offset, resume every open run;
* **commands** in offset order (:mod:`wakeline.actors.dispatch`); a command's events and the
  commands offset that covers it are appended in one atomic unit;
* **budget wakes** of runs waiting on a shared budget;
* **restarts**: after a retriable log error (or an append whose outcome is unknown) the owner
  stops its runs, rewinds the commands consumer to the first command not yet durably applied,
  and opens again -- the failed command is read again, never dead-lettered.

Fencing is an expected event: an owner whose writer was fenced (a newer owner exists) stops its
runs without writing and goes quiet; commands routed to it are dropped (their offsets were not
committed, so the new owner reads them).  Nothing here makes the worker exit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from wakeline.actors.appender import JournalAppender
from wakeline.actors.dispatch import Dispatcher
from wakeline.actors.run_actor import RunActor
from wakeline.actors.shared import Shared
from wakeline.core.activation import Completion
from wakeline.core.app import App
from wakeline.core.model import DeltaSink
from wakeline.ledger import Ledger
from wakeline.schemas.events import Event
from wakeline.telemetry.runtime import Telemetry
from wakeline.topics.port import FencedError, LogError, OffsetCommit, PartitionWriter, Record

log = logging.getLogger(__name__)

_BACKOFF_S = (0.05, 0.2, 0.5, 1.0, 2.0)


@dataclass(frozen=True, slots=True)
class BudgetWake:
    run_id: str
    scope: str
    limit: str
    by: str


Job = Record | BudgetWake

UnloadListener = Callable[[str, int, str], None]
"""Called with ``(worker_id, partition, run_id)`` when an owner unloads a run."""

_unload_listeners: list[UnloadListener] = []


def on_run_unloaded(listener: UnloadListener) -> Callable[[], None]:
    """Call ``listener(worker_id, partition, run_id)`` each time an owner in this process
    unloads a run from memory because only people can move it on (its actor stopped with
    nothing in flight: a command loads it again).  Returns a function that removes the
    listener.  For tests and diagnostics: the listener runs on the worker's loop and must not
    block."""
    _unload_listeners.append(listener)

    def remove() -> None:
        if listener in _unload_listeners:
            _unload_listeners.remove(listener)

    return remove


class PartitionOwner:
    """One owned partition; see the module docstring.  Create it, then :meth:`start` it."""

    def __init__(self, partition: int, shared: Shared) -> None:
        self.partition = partition
        self.shared = shared
        self.actors: dict[str, RunActor] = {}
        self.versions: dict[str, tuple[str, str]] = {}
        """``(agent, version)`` of each open run of the partition, hosted here or not."""
        self._jobs: collections.deque[Job] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer: PartitionWriter | None = None
        self._appender: JournalAppender | None = None
        self._accept_from: int | None = None
        self._restart_from: int | None = None
        self._restart_wanted = False
        self._dispatch = Dispatcher(self)
        self.opened = asyncio.Event()
        self.fenced = False

    # -- what the worker calls ------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"owner:p{self.partition}")

    def submit(self, record: Record) -> None:
        """Queue a command record (called by the worker's poll loop, in offset order)."""
        if self.fenced:
            return
        if self._accept_from is not None and record.offset < self._accept_from:
            return  # read again after a rebalance: already applied or queued
        self._accept_from = record.offset + 1
        self._jobs.append(record)
        self._wake.set()

    def wake_budget(self, wake: BudgetWake) -> None:
        if not self.fenced:
            self._jobs.append(wake)
            self._wake.set()

    async def stop(self) -> None:
        """Stop without writing anything more (revoked, or the worker is stopping)."""
        self.fenced = True  # nothing more is accepted
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._close_parts()

    # -- the job loop -----------------------------------------------------------------------
    async def _run(self) -> None:
        await self._open()
        while not self.fenced:
            try:
                await self._step()
            except Exception:  # a bug: never leave the partition stuck, never exit the worker
                log.exception(
                    "partition %s: job failed; restarting it from the log", self.partition
                )
                self.request_restart()
        self._jobs.clear()

    async def _step(self) -> None:
        if self._restart_wanted:
            await self._restart()
            return
        job = await self._next_job()
        if isinstance(job, Record):
            await self._command(job)
        elif job is not None:
            await self._guarded(self._dispatch.budget_wake(job), None)

    async def _next_job(self) -> Job | None:
        while not self._jobs:
            if self._restart_wanted or self.fenced:
                return None
            self._wake.clear()
            await self._wake.wait()
        return self._jobs.popleft()

    async def _command(self, record: Record) -> None:
        if await self._guarded(self._dispatch.command(record), record):
            self.shared.lag.handled(record.partition, record.offset)

    async def _guarded(self, job: Coroutine[Any, Any, None], record: Record | None) -> bool:
        """Run a job; a log error restarts the partition (fenced: loses it).  True if done."""
        try:
            await job
        except FencedError as exc:
            self._lose(exc)
            return False
        except LogError as exc:
            log.warning("partition %s: %s; restarting it from the log", self.partition, exc)
            self.request_restart(record.offset if record is not None else None)
            return False
        return True

    # -- open, restart, lose ------------------------------------------------------------------
    async def _open(self) -> None:
        for attempt in range(1_000_000):
            try:
                await self._open_once()
                return
            except FencedError as exc:
                self._lose(exc)
                return
            except Exception as exc:
                pause = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
                log.warning(
                    "partition %s: open failed (%r); again in %ss", self.partition, exc, pause
                )
                await self._close_parts()
                await asyncio.sleep(pause)

    async def _open_once(self) -> None:
        s = self.shared
        self._writer = await s.log.writer(f"{s.group}.p{self.partition}", self.partition)
        await s.journal_sync.agree_with_log(self.partition)
        self._appender = JournalAppender(
            self._writer,
            topic=s.topics.events,
            system=s.log.system,
            store=s.store,
            journal=s.journal,
            topic_names=s.topic_names,
            telemetry=s.telemetry,
            signer=s.signer,
            on_broken=self._appender_broken,
        )
        open_runs = s.journal.open_runs(self.partition)
        for run_id in open_runs:
            await self._dispatch.resume(run_id, None, "assigned")
        log.info("partition %d: open, %d runs resumed from the log", self.partition, len(open_runs))
        self.opened.set()
        s.on_opened(self)

    def request_restart(self, from_offset: int | None = None) -> None:
        """Restart the partition from the log at the next job boundary; the commands from
        ``from_offset`` on (and every queued one) are read again."""
        if from_offset is not None:
            self._restart_from = min(from_offset, self._restart_from or from_offset)
        self._restart_wanted = True
        self._wake.set()

    async def _restart(self) -> None:
        queued = [j.offset for j in self._jobs if isinstance(j, Record)]
        starts = [o for o in (self._restart_from, *queued) if o is not None]
        self._jobs = collections.deque(j for j in self._jobs if not isinstance(j, Record))
        if starts:  # synchronously with the clearing: no record can slip in between
            self.shared.rewind(self.partition, min(starts))
            self._accept_from = min(starts)
        self._restart_from, self._restart_wanted = None, False
        self.opened.clear()
        await self._close_parts()
        await asyncio.sleep(_BACKOFF_S[1])
        await self._open()

    def _lose(self, error: BaseException) -> None:
        if not self.fenced:
            log.warning("partition %s: fenced (%s); its runs stop here", self.partition, error)
            self.fenced = True
            self._wake.set()
            self.shared.on_fenced(self)

    def _appender_broken(self, error: BaseException) -> None:
        if isinstance(error, FencedError):
            self._lose(error)
        elif not self.fenced:
            self.request_restart()

    async def unload_waiting(self, run_id: str) -> bool:
        """Stop the run's actor if only timers are in flight (nothing is lost: a resume arms
        them again from the journal); False if a call is in flight.  True if none is loaded."""
        actor = self.actors.get(run_id)
        if actor is None:
            return True
        if not actor.only_waits():
            return False
        del self.actors[run_id]
        await actor.stop()
        return True

    async def _close_parts(self) -> None:
        actors = list(self.actors.values())
        self.actors.clear()
        await asyncio.gather(*(a.stop() for a in actors))
        appender, self._appender = self._appender, None
        if appender is not None:
            await appender.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                await writer.close()

    # -- ActorHost ----------------------------------------------------------------------------
    @property
    def worker_id(self) -> str:
        return self.shared.worker_id

    @property
    def app(self) -> App:
        return self.shared.app

    @property
    def telemetry(self) -> Telemetry:
        return self.shared.telemetry

    @property
    def ledger(self) -> Ledger:
        return self.shared.ledger

    def now_ms(self) -> int:
        return self.shared.now_ms()

    def delta_sink(self, run_id: str, seq: int) -> DeltaSink | None:
        return self.shared.deltas.sink(run_id, seq)

    def on_completion(self, actor: RunActor, completion: Completion) -> None:
        waits = self.shared.budget_waits
        waits.update(actor.run_id, actor.run_started, completion)
        for scope, limit, by in waits.missed(actor.run_started, completion, self.shared.ledger):
            self.wake_budget(BudgetWake(actor.run_id, scope, limit, by))

    async def append_events(
        self, partition: int, events: list[Event], commit: OffsetCommit | None = None
    ) -> None:
        appender = self._appender
        if appender is None or partition != self.partition or self.fenced:
            raise FencedError(f"partition {partition} is not owned here any more")
        await appender.append(events, commit)

    def actor_stopped(self, actor: RunActor, error: BaseException | None) -> None:
        if self.actors.get(actor.run_id) is actor:
            del self.actors[actor.run_id]
        if actor.finished:
            self.versions.pop(actor.run_id, None)
        if error is None:
            if actor.evicted:
                self._unloaded(actor.run_id)
            return
        if isinstance(error, FencedError):
            self._lose(error)
            return
        log.error(
            "run %s stopped on error; partition %s restarts from the log",
            actor.run_id,
            self.partition,
            exc_info=error,
        )
        self.request_restart()

    def _unloaded(self, run_id: str) -> None:
        for listener in list(_unload_listeners):
            try:
                listener(self.worker_id, self.partition, run_id)
            except Exception:  # an observer must never break the partition
                log.exception("run %s: an unload listener failed", run_id)

    def register(self, actor: RunActor) -> None:
        """Keep a run actor whose first append succeeded (and that has not ended)."""
        if actor.finished:
            self.versions.pop(actor.run_id, None)
        elif not actor.evicted:
            self.actors[actor.run_id] = actor
