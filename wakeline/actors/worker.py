"""The worker: a member of the consumer group on the commands topic that routes to its owners.

For each partition the group assigns it the worker starts a
:class:`~wakeline.actors.owner.PartitionOwner`, which opens the partition's fenced writer,
makes the journal store agree with the log and resumes the partition's open runs, then applies
its commands in offset order.  The worker itself only routes: polled command records and
budget wakes go to the owner of their partition, records of partitions it does not own are
dropped (the owner reads them).  It owns what partitions share: the log, the journal store,
the ledger, telemetry.  A fenced or failing partition never makes the worker exit.

Membership: with ``instance_id`` the worker is a *static* member (Kafka ``group.instance.id``;
the CLI derives it from the state slot), so a worker restarted within the session timeout gets
its partitions back without a rebalance.  A partition a worker keeps across a rebalance keeps
its owner, its runs and their calls in flight.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from wakeline.actors.budget_waits import BudgetWaits
from wakeline.actors.journal_sync import JournalSync
from wakeline.actors.lag import LagProbe
from wakeline.actors.outputs import SideOutputs
from wakeline.actors.owner import BudgetWake, PartitionOwner
from wakeline.core.app import App
from wakeline.deltas import DeltaPublisher
from wakeline.ledger import Ledger
from wakeline.projections import EVENTS, NOTICES
from wakeline.projections.journal import JournalProjection
from wakeline.projections.store import ProjectionStore
from wakeline.telemetry.config import default_telemetry
from wakeline.telemetry.runtime import Telemetry
from wakeline.topics.hosting import WORKER_GROUP, Hosting
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import GroupConsumer, Log
from wakeline.topics.signing import RecordSigner, signer_for
from wakeline.topics.specs import DEFAULT_TOPICS, Topics

log = logging.getLogger(__name__)

DEFAULT_GROUP = WORKER_GROUP


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
        instance_id: str | None = None,
        session_timeout_s: float = 10.0,
        max_input_bytes: int = 256 * 1024,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry | None = None,
        signer: RecordSigner | None = None,
    ) -> None:
        self._app = app
        self._signer = signer if signer is not None else signer_for(log)
        self._telemetry = telemetry if telemetry is not None else default_telemetry()
        self._log = log
        self._topics = topics
        self._group = group
        self._worker_id = worker_id or default_worker_id()
        self._instance_id = instance_id
        self._session_timeout_s = session_timeout_s
        self._max_input_bytes = max_input_bytes
        self._clock = clock
        self._store = ProjectionStore(state_dir, signer=self._signer)
        self._journal = JournalProjection(self._store)
        self._topic_names = {EVENTS: topics.events, NOTICES: topics.notices}
        self._journal_sync = JournalSync(
            log, self._store, self._journal, topic=topics.events, topic_names=self._topic_names
        )
        self._owners: dict[int, PartitionOwner] = {}
        self._partitions = 0
        self._consumer: GroupConsumer | None = None
        self._ledger = Ledger(log, topics.ledger, writer=self._worker_id)
        self._deltas = DeltaPublisher(log, topics.deltas, writer=self._worker_id, clock=clock)
        self._budget_waits = BudgetWaits()
        self._outputs = SideOutputs(log, topics, self._worker_id, self.telemetry, self.now_ms)
        self._lag = LagProbe(log, topics.commands, group, self.telemetry)
        self.ready = asyncio.Event()
        """Set while the worker holds partitions and every owner has resumed its open runs."""

    # -- Shared (what the partition owners use) ---------------------------------------------
    @property
    def worker_id(self) -> str:
        return self._worker_id

    @property
    def app(self) -> App:
        return self._app

    @property
    def log(self) -> Log:
        return self._log

    @property
    def topics(self) -> Topics:
        return self._topics

    @property
    def group(self) -> str:
        return self._group

    @property
    def store(self) -> ProjectionStore:
        return self._store

    @property
    def journal(self) -> JournalProjection:
        return self._journal

    @property
    def signer(self) -> RecordSigner | None:
        """Signs the events this worker appends (and its store skips unsigned ones)."""
        return self._signer

    @property
    def journal_sync(self) -> JournalSync:
        return self._journal_sync

    @property
    def topic_names(self) -> Mapping[str, str]:
        return self._topic_names

    @property
    def telemetry(self) -> Telemetry:
        return self._telemetry

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def deltas(self) -> DeltaPublisher:
        return self._deltas

    @property
    def budget_waits(self) -> BudgetWaits:
        return self._budget_waits

    @property
    def outputs(self) -> SideOutputs:
        return self._outputs

    @property
    def lag(self) -> LagProbe:
        return self._lag

    @property
    def max_input_bytes(self) -> int:
        return self._max_input_bytes

    @property
    def partitions(self) -> int:
        return self._partitions

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def rewind(self, partition: int, offset: int) -> None:
        consumer = self._consumer
        if consumer is not None and partition in consumer.assignment():
            consumer.seek(partition, offset)

    def on_opened(self, owner: PartitionOwner) -> None:
        if self._owners.get(owner.partition) is owner:
            self._update_ready()

    def on_fenced(self, owner: PartitionOwner) -> None:
        self._update_ready()

    def _update_ready(self) -> None:
        live = [o for o in self._owners.values() if not o.fenced]
        if live and all(o.opened.is_set() for o in live):
            self.ready.set()
        else:
            self.ready.clear()

    # -- HostingSource (what the worker announces to its group) -------------------------------
    def hosting(self) -> Hosting:
        """The agent versions this worker hosts and, per opened partition, those its open runs
        need (hosted here or not): the group's assignment follows them."""
        needs = {
            p: frozenset(o.versions.values())
            for p, o in self._owners.items()
            if o.opened.is_set() and not o.fenced
        }
        return Hosting(self._app.hosted(), needs)

    # -- AssignmentListener ------------------------------------------------------------------
    async def on_assigned(self, partitions: frozenset[int]) -> None:
        for partition in sorted(partitions):
            old = self._owners.pop(partition, None)
            if old is not None:  # fenced earlier and never revoked: start afresh
                await old.stop()
            owner = PartitionOwner(partition, self)
            self._owners[partition] = owner
            owner.start()
        log.info("%s assigned %s", self._worker_id, sorted(partitions))
        self.telemetry.rebalance("assign", len(partitions))
        self._update_ready()

    async def on_revoked(self, partitions: frozenset[int]) -> None:
        owners = [self._owners.pop(p) for p in sorted(partitions) if p in self._owners]
        await asyncio.gather(*(o.stop() for o in owners))
        log.info("%s revoked %s", self._worker_id, sorted(partitions))
        self.telemetry.rebalance("revoke", len(partitions))
        self._update_ready()

    # -- main loop -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume commands until ``stop`` is set, then leave the group at once."""
        self._partitions = await self._log.partition_count(self._topics.commands)
        consumer = self._consumer = self._log.consumer(
            self._group,
            self._topics.commands,
            self,
            session_timeout_s=self._session_timeout_s,
            instance_id=self._instance_id,
            hosting=self,
        )
        ledger_partitions = await self._log.partition_count(self._topics.ledger)
        limits = asyncio.create_task(
            self._budget_waits.watch(self._ledger, ledger_partitions, stop, self._wake),
            name="budget-limits",
        )
        lag = asyncio.create_task(
            self._lag.run(stop, lambda: frozenset(self._owners), self.telemetry.lag_interval_s)
        )
        try:
            while not stop.is_set():
                for record in await consumer.poll(0.1):
                    owner = self._owners.get(record.partition)
                    if owner is not None:  # else not ours any more: its new owner reads it
                        owner.submit(record)
                if limits.done():
                    limits.result()  # a failure of the ledger watcher stops the worker loudly
        finally:
            for task in (limits, lag):
                task.cancel()
            await asyncio.gather(limits, lag, return_exceptions=True)
            await consumer.close()
            await asyncio.gather(*(o.stop() for o in self._owners.values()))
            self._owners.clear()
            self._store.close()
            self.telemetry.flush()

    async def _wake(self, run_id: str, scope: str, limit: str, by: str) -> None:
        owner = self._owners.get(partition_for(run_id.encode(), self._partitions))
        if owner is not None:
            owner.wake_budget(BudgetWake(run_id, scope, limit, by))

    @property
    def running_runs(self) -> list[str]:
        return sorted(r for o in self._owners.values() for r in o.actors)
