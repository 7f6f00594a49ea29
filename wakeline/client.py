"""``Client``: start, fork, follow, cancel, resume and query runs and sessions.  It only talks
to the log: it publishes commands (key = run id) and reads a run's events, notices and live
deltas from the partitions the run id maps to, and never needs a worker to answer.  Queries
(``get``, ``list``, ``costs``, ``budgets``) read views it folds from the log, in ``views_dir``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self, Unpack

from wakeline import jsonutil
from wakeline.client_types import NoViewsError as NoViewsError
from wakeline.client_types import RunError as RunError
from wakeline.client_types import RunHandle as RunHandle
from wakeline.core.app import App
from wakeline.core.ids import check_run_id
from wakeline.following import EventHub, Subscription
from wakeline.forking import ForkEdits, fork_command
from wakeline.projections.cost_cube import CostFilter
from wakeline.projections.queries import RunQuery
from wakeline.projections.rows import (
    BudgetRow,
    CostDimension,
    CostRow,
    CostSummary,
    Page,
    RunRow,
    StepRow,
)
from wakeline.projections.views import Views
from wakeline.runtime import (
    DEFAULT_PARTITIONS,
    StateDir,
    ensure_topics,
    open_log,
)
from wakeline.schemas.budgets import BudgetMetric
from wakeline.schemas.codec import command_codec
from wakeline.schemas.commands import (
    CancelRun,
    Command,
    CommandPayload,
    CommandRejected,
    Notice,
    RaiseBudget,
    ResolveGate,
    ResolveInDoubt,
    ResumeRun,
    RunDrifted,
    StartRun,
    UpgradeRun,
)
from wakeline.schemas.events import (
    Budget,
    Event,
    Resolution,
    RunCancelled,
    RunCompleted,
    RunFailed,
)
from wakeline.sessions import SessionClient
from wakeline.telemetry.tracing import current_trace_headers
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import Log, LogReader, OutRecord, RecordTooLargeError
from wakeline.topics.signing import RecordSigner, signer_for
from wakeline.topics.specs import DEFAULT_TOPICS, Topics
from wakeline.upgrading import UpgradeCheck, upgrade_runs
from wakeline.watching import RunUpdate, watch_run

Steps = list[StepRow]
Costs = list[CostRow]
Budgets = list[BudgetRow]


class Client(SessionClient):
    def __init__(
        self,
        log: Log,
        *,
        topics: Topics = DEFAULT_TOPICS,
        issuer: str = "",
        views_dir: Path | None = None,
        signer: RecordSigner | None = None,
    ) -> None:
        """``issuer``: who this client's commands come from; it is written into each command
        and into the events a command causes (``GateResolved.by``, ``BudgetRaised.by``, a
        cancel's ``by``), so the audit trail names it.  The CLI passes the operating-system
        user and host (``alice@build-7``), the HTTP API the name of the caller's key.
        ``views_dir``: where queries keep the views they fold from the log (a free ``views-N``
        slot is taken on first use).  ``signer``: the record key events are checked with
        (default: the log's, :func:`~wakeline.topics.signing.signer_for`)."""
        self._log = log
        self._topics = topics
        self._issuer = issuer
        self._views_dir = views_dir
        self._signer = signer if signer is not None else signer_for(log)
        self._slot: StateDir | None = None
        self._views: Views | None = None
        self._hub: EventHub | None = None  # followers shared by this client's watches
        self._watches = 0  # open now: a lone watch reads the log itself (one hop less)
        self._owns_log = False

    @classmethod
    async def open(
        cls,
        *,
        data: str | Path | None = None,
        kafka: str | None = None,
        topics: Topics = DEFAULT_TOPICS,
        issuer: str = "",
        views_dir: Path | None = None,
    ) -> Client:
        """A client with a log of its own: Kafka when ``kafka`` (bootstrap servers) is given,
        else the embedded log in ``data`` (default ``$WAKELINE_DATA``, else ``./.wakeline``).

        The client closes that log in :meth:`aclose` (``async with await Client.open(...)``)."""
        client = cls(
            await open_log(data=data, kafka=kafka, topics=topics),
            topics=topics,
            issuer=issuer,
            views_dir=views_dir,
        )
        client._owns_log = True
        return client

    @property
    def log(self) -> Log:
        return self._log

    @property
    def topics(self) -> Topics:
        return self._topics

    @property
    def signer(self) -> RecordSigner | None:
        """The record key this client checks events with (``None``: it trusts every record)."""
        return self._signer

    async def create_topics(
        self, *, partitions: int = DEFAULT_PARTITIONS, replication: int = 1
    ) -> None:
        """Create the client's topics on its log (existing topics are kept as they are)."""
        await ensure_topics(
            self._log, partitions=partitions, replication=replication, topics=self._topics
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def close(self) -> None:
        """Close the views and the watches' shared followers (not a log given to the client)."""
        if self._hub is not None:
            self._hub.cancel()
            self._hub = None
        if self._views is not None:
            self._views.close()
            self._views = None
        if self._slot is not None:
            self._slot.release()
            self._slot = None

    async def aclose(self) -> None:
        """Close the views and the shared followers, and the log when :meth:`open` opened
        it."""
        if self._hub is not None:
            hub, self._hub = self._hub, None
            await hub.close()
        self.close()
        if self._owns_log:
            self._owns_log = False
            await self._log.close()

    async def _partition(self, run_id: str) -> int:
        count = await self._log.partition_count(self._topics.commands)
        return partition_for(run_id.encode(), count)

    async def _send(self, run_id: str, payload: CommandPayload) -> str:
        command_id = uuid.uuid4().hex
        command = Command(command_id, run_id, int(time.time() * 1000), self._issuer, payload)
        codec = command_codec()
        value = codec.encode(command)
        if len(value) > codec.max_bytes:  # workers would dead-letter it as undecodable
            raise RecordTooLargeError(
                f"a {command.type} command of {len(value)} bytes is over the limit of "
                f"{codec.max_bytes} bytes (keep a run's input small: pass a reference to data)"
            )
        record = OutRecord(run_id.encode(), value, current_trace_headers())
        await self._log.append(self._topics.commands, [record])
        return command_id

    async def start_run(
        self,
        agent: str,
        input: Any,
        *,
        run_id: str | None = None,
        tenant: str = "",
        budget: Budget | None = None,
        session: str = "",
        version: str = "",
    ) -> RunHandle:
        """Publish a start command; the run id (:mod:`wakeline.core.ids`, else ValueError) is
        the start's idempotency key.  ``session``: the session's next turn (wakeline.sessions);
        no ``version``: the starting worker's highest."""
        payload = StartRun(agent, jsonutil.dumps(input), tenant, budget, version=version)
        if session:
            return await self.start_turn(payload, session, await self.session(session), run_id)
        return await self._start(payload, run_id)

    async def fork(
        self, source: str, *, at: int, run_id: str = "", **edits: Unpack[ForkEdits]
    ) -> RunHandle:
        """Start a run that reuses ``source``'s journal before seq ``at`` (never billed again)
        and runs live from there with ``edits`` (:class:`~wakeline.forking.ForkEdits`: model,
        tools, prompt); :class:`~wakeline.forking.ForkError` for a point that cannot be forked."""
        payload = await fork_command(self._log, self._topics, source, at, **edits)
        return await self._start(payload, run_id or None)

    async def _start(self, payload: StartRun, run_id: str | None) -> RunHandle:
        run_id = uuid.uuid4().hex if run_id is None else check_run_id(run_id)
        partition = await self._partition(run_id)
        offset = await self._log.end_offset(self._topics.events, partition)
        command_id = await self._send(run_id, payload)
        return RunHandle(run_id, partition, offset, command_id)

    async def cancel(self, run_id: str, reason: str = "") -> None:
        await self._send(run_id, CancelRun(reason))

    async def resume(self, run_id: str) -> None:
        await self._send(run_id, ResumeRun())

    async def approve(self, run_id: str, gate: str, reason: str = "") -> None:
        """Approve an open gate (or a policy denial waiting for a person) of a run."""
        await self._send(run_id, ResolveGate(gate, True, reason))

    async def reject(self, run_id: str, gate: str, reason: str = "") -> None:
        await self._send(run_id, ResolveGate(gate, False, reason))

    async def raise_budget(
        self, run_id: str, metric: BudgetMetric, limit: str | int | Decimal
    ) -> None:
        """Raise the run's ``usd`` / ``tokens`` / ``model_calls`` / ``wall_time_ms`` limit."""
        await self._send(run_id, RaiseBudget(metric, str(limit)))

    async def resolve_in_doubt(
        self, run_id: str, step: int, resolution: Resolution, result: Any = None
    ) -> None:
        """RETRY the call (same idempotency key), SUPPLY its result, or FAIL the run."""
        text = jsonutil.dumps(result) if resolution == "SUPPLY" else ""
        await self._send(run_id, ResolveInDoubt(step, resolution, text))

    async def upgrade_run(self, run_id: str, to_version: str, checked_seq: int) -> str:
        """Send ``UpgradeRun`` (its command id); :meth:`upgrade` checks runs before."""
        return await self._send(run_id, UpgradeRun(to_version, checked_seq, self._issuer))

    async def upgrade(
        self, agent: str, to_version: str, app: App, *, dry_run: bool = False
    ) -> list[UpgradeCheck]:
        """Replay each in-flight run of ``agent`` against ``to_version`` of ``app`` (no provider
        reachable) and, unless ``dry_run``, move those that do not diverge there."""
        return await upgrade_runs(self, app, agent, to_version, dry_run=dry_run)

    # -- queries ----------------------------------------------------------------------------
    async def views(self) -> Views:
        """The client's views, caught up with the log now."""
        if self._views_dir is None:
            raise NoViewsError(
                "queries need views the client folds from the log: "
                "create the client with Client(log, views_dir=Path(...))"
            )
        if self._views is None:
            self._slot = StateDir(self._views_dir, prefix="views")
            self._views = Views(
                self._log, self._slot.path, topics=self._topics, signer=self._signer
            )
        await self._views.refresh()
        return self._views

    async def get(self, run_id: str) -> RunRow | None:
        """The run's summary row (status, agent, tenant, times, tokens, cost ...), or ``None``
        for a run the log does not show yet."""
        return (await self.views()).queries.get_run(run_id)

    async def list(self, **query: Unpack[RunQuery]) -> Page[RunRow]:
        """Runs newest first, filtered by ``status``, ``agent``, ``tenant``, ``since_ms <=
        started < until_ms``; at most ``limit`` (50) of them; pass the page's ``next_cursor``
        as ``cursor`` for the next page.  ``ValueError`` on a bad cursor."""
        return (await self.views()).queries.list_runs(**query)

    async def steps(self, run_id: str) -> Steps:
        """The run's steps in seq order (kind, name, status, usage, cost, payloads)."""
        return (await self.views()).queries.steps(run_id)

    async def costs(self, dimension: CostDimension, key: str | None = None) -> Costs:
        """Completed model calls, tokens and cost (``cost_usd``: exact decimal text) summed by
        ``dimension``: ``agent``, ``tenant``, ``model`` (provider and model), ``day`` (UTC
        date), ``agent-day`` or ``tenant-day``; one row per name, in key order.  With ``key``,
        the rows whose first name is ``key`` (an agent, a tenant, a provider or a day).
        ``ValueError`` for an unknown dimension."""
        return (await self.views()).costs(dimension, key)

    async def cost_summary(self, **where: Unpack[CostFilter]) -> CostSummary:
        """Spend of the model calls made on the UTC days ``since_day`` .. ``until_day``
        (``yyyy-mm-dd``, inclusive) by runs of ``agent`` / ``tenant``: in total, by agent, by
        tenant and by ``provider/model``, with the runs started on those days."""
        return (await self.views()).cost_summary(**where)

    async def budgets(self) -> Budgets:
        """Every shared budget the ledger has records of (``key`` ``tenant:<name>`` or
        ``agent:<name>``, ``limit``, ``spent``, ``reserved``, ``in_flight`` ...), in key order."""
        return (await self.views()).budgets()

    # -- following a run ---------------------------------------------------------------------
    async def watch(
        self, run_id: str, *, from_offset: int = 0, poll_s: float = 0.2, deltas: bool = False
    ) -> AsyncIterator[RunUpdate]:
        """The run's events from its first one, then live, each once and in order, plus
        notices about it; ends after its terminal event, or a drift or rejection that no
        later event superseded (a drifted run resumed with fixed code goes on).

        ``deltas=True`` adds the text deltas of model calls that stream, from now on: only
        for calls still open here (requested, no result yet), each before the call's result
        event and never after it.  A delta with ``index`` 0 (re)starts its call's text."""
        partition = await self._partition(run_id)
        reader: LogReader = self._log
        subscription: Subscription | None = None
        if self._watches:  # others are open: one reader per partition pushes each its run's
            # records (wakeline.following); after an overflow it reads on from the log itself
            if self._hub is None:
                self._hub = EventHub(self._log)
            reader = subscription = self._hub.subscribe(key=run_id.encode(), resync=True)
        updates = watch_run(
            reader,
            self._topics,
            run_id,
            partition,
            from_offset=from_offset,
            poll_s=poll_s,
            deltas=deltas,
            signer=self._signer,
            source=self._log,
        )
        self._watches += 1
        try:
            async for update in updates:
                yield update
        finally:
            self._watches -= 1
            if subscription is not None:
                subscription.close()

    subscribe = watch
    """:meth:`watch` by another name: ``async for update in client.subscribe(run_id)``."""

    async def events(self, run_id: str, *, from_offset: int = 0) -> AsyncIterator[Event]:
        """Only the journal events of :meth:`watch`."""
        async for update in self.watch(run_id, from_offset=from_offset):
            if update.event is not None:
                yield update.event

    async def result(self, run_id: str, *, from_offset: int = 0) -> Any:
        """Wait for the run to end; its output, or :class:`RunError`."""
        last: Notice | None = None
        async for update in self.watch(run_id, from_offset=from_offset):
            if update.notice is not None:
                last = update.notice
            if update.event is None:
                continue
            payload = update.event.payload
            if isinstance(payload, RunCompleted):
                return jsonutil.loads(payload.output)
            if isinstance(payload, RunFailed):
                raise RunError(run_id, "failed", f"{payload.error_type}: {payload.message}")
            if isinstance(payload, RunCancelled):
                raise RunError(run_id, "cancelled", payload.reason)
        # the watch ended on a drift or a rejection that nothing superseded
        note = last.payload if last is not None else None
        if isinstance(note, RunDrifted):
            raise RunError(run_id, "drifted", note.message)
        if isinstance(note, CommandRejected):
            raise RunError(run_id, "rejected", note.reason)
        raise RunError(run_id, "unknown", "the event stream ended")
