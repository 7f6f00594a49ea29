"""Query views: the query projections in a store of their own, kept caught up.

Each process that answers queries (the CLI, the API server) folds the log into its own
RocksDB store; it never shares a store with a worker.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Unpack

from wakeline.projections import EVENTS, LEDGER, NOTICES
from wakeline.projections.audit import AuditProjection, audit_trail, verify
from wakeline.projections.budgets import BudgetsProjection, budget, budgets
from wakeline.projections.cost_cube import CostFilter, cost_summary
from wakeline.projections.costs import CostsProjection, costs
from wakeline.projections.queries import Queries
from wakeline.projections.rebuild import rebuild
from wakeline.projections.rows import (
    AuditEntry,
    AuditReport,
    BudgetRow,
    CostDimension,
    CostRow,
    CostSummary,
)
from wakeline.projections.runner import catch_up
from wakeline.projections.runs import RunsProjection
from wakeline.projections.sessions import SessionRow, SessionsProjection, session
from wakeline.projections.steps import StepsProjection
from wakeline.projections.store import Projection, ProjectionStore
from wakeline.topics.hosting import WORKER_GROUP
from wakeline.topics.port import Log
from wakeline.topics.signing import RecordSigner
from wakeline.topics.specs import DEFAULT_TOPICS, Topics

FORMAT = b"4"
"""The views' format: 2 = the costs projection folds the cost cube too; 3 = sessions; 4 = run
rows carry the agent version."""
FORMAT_KEY = b"meta/views-format"


def query_projections() -> Sequence[Projection]:
    return (
        RunsProjection(),
        StepsProjection(),
        AuditProjection(),
        CostsProjection(),
        BudgetsProjection(),
        SessionsProjection(),
    )


def topic_names(topics: Topics = DEFAULT_TOPICS) -> Mapping[str, str]:
    """Logical -> physical names of the topics :func:`query_projections` read."""
    return {EVENTS: topics.events, NOTICES: topics.notices, LEDGER: topics.ledger}


class Views:
    def __init__(
        self,
        log: Log,
        path: Path,
        *,
        topics: Topics = DEFAULT_TOPICS,
        signer: RecordSigner | None = None,
    ) -> None:
        """``signer``: the record key; with it, events nobody holding the key appended are
        skipped by the views and reported by :meth:`verify_audit`."""
        self._log = log
        self._path = path
        self._names = topic_names(topics)
        self._commands = topics.commands
        self._projections = query_projections()
        self._signer = signer
        self._store = ProjectionStore(path, signer=signer)
        self.queries = Queries(self._store)

    async def refresh(self) -> int:
        """Fold everything appended since the last refresh; returns records folded.  A store
        folded by an older version of the projections is rebuilt first."""
        if self._store.get(FORMAT_KEY) != FORMAT:
            if any(True for _ in self._store.scan(b"meta/offset/")):
                return await self.rebuild()
            self._store.put(FORMAT_KEY, FORMAT)  # an empty store is of any format
        folded = await catch_up(self._log, self._store, self._projections, topic_names=self._names)
        await self.refresh_hosted()
        return folded

    async def refresh_hosted(self) -> None:
        """Ask the log what the live workers host, for the ``orphaned`` flag of the rows read
        next (:meth:`refresh` does it too)."""
        self.queries.hosted = await self._log.hosted(WORKER_GROUP, self._commands)

    async def rebuild(self) -> int:
        """Throw the store away and refold it from offset 0."""
        self._store.close()
        count = await rebuild(
            self._log,
            self._path,
            self._projections,
            topic_names=self._names,
            signer=self._signer,
        )
        self._store = ProjectionStore(self._path, signer=self._signer)
        self._store.put(FORMAT_KEY, FORMAT)
        self.queries = Queries(self._store)
        await self.refresh_hosted()
        return count

    async def verify_audit(self, run_id: str) -> AuditReport:
        """Recompute the run's hash chain from the log and compare it with the audit view."""
        return await verify(
            self._log, self._store, run_id, events_topic=self._names[EVENTS], signer=self._signer
        )

    def audit_trail(self, run_id: str) -> list[AuditEntry]:
        return audit_trail(self._store, run_id)

    def costs(self, dimension: CostDimension, key: str | None = None) -> list[CostRow]:
        """Cost rows of ``dimension`` (``agent``, ``tenant``, ``model``, ``day``, ``agent-day``,
        ``tenant-day``); with ``key``, those whose first name is ``key``.  See
        :func:`wakeline.projections.costs.costs`."""
        return costs(self._store, dimension, key)

    def cost_summary(self, **where: Unpack[CostFilter]) -> CostSummary:
        """Totals of the calls of ``agent`` / ``tenant`` on the UTC days from ``since_day`` to
        ``until_day`` (inclusive): see :func:`wakeline.projections.cost_cube.cost_summary`."""
        return cost_summary(self._store, **where)

    def budget(self, key: str) -> BudgetRow | None:
        """The state of the shared budget ``key`` (a ledger key, e.g. ``tenant:acme``)."""
        return budget(self._store, key)

    def budgets(self) -> list[BudgetRow]:
        """Every shared budget's state, in ledger key order."""
        return budgets(self._store)

    def session(self, session_id: str) -> SessionRow | None:
        """The session's turns (see :func:`wakeline.projections.sessions.session`)."""
        return session(self._store, session_id)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every key and value of the store (to compare folds)."""
        return self._store.items()

    def close(self) -> None:
        self._store.close()
