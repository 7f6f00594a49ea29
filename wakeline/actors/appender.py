"""The journal appender of one owned partition: the only path by which a worker writes events.

Every append of a partition -- a run's transition, a command's commit -- goes through one
:class:`JournalAppender`, which folds what it wrote into the worker's journal store *in offset
order*, so the store's watermark for the partition can never pass a record it has not folded.

Commit order, per round:

1. take every append queued so far and hand them to the fenced writer together (the writer
   may put them in one transaction: group commit);
2. wait until every one of them has an outcome;
3. if every outcome is definite (landed, or rejected before anything was written), fold the
   records that landed, sorted by offset, in one ``WriteBatch`` with the new watermark;
4. only then resolve the callers' futures.

A caller that is cancelled (its actor stopped by a revoke) does not stop its round: what the
writer landed is still folded.  If an outcome is unknown (the writer timed out, failed or was
fenced), nothing of the round is folded and the appender is *broken*: every later append fails
at once and the owner must restart the partition, which catches the store up by reading the
log from the watermark.  Either way no record below the watermark is missing from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from wakeline.projections.journal import JournalProjection
from wakeline.projections.store import ProjectionStore
from wakeline.schemas.codec import event_codec, record_hash
from wakeline.schemas.events import Event
from wakeline.telemetry.runtime import Telemetry
from wakeline.topics.port import (
    Headers,
    LogUnavailableError,
    OffsetCommit,
    OutRecord,
    PartitionWriter,
    Record,
    RecordTooLargeError,
    UnknownTopicError,
)
from wakeline.topics.signing import HEADER, RecordSigner

DEFINITE = (RecordTooLargeError, UnknownTopicError, ValueError)
"""Errors raised before anything of an append was written: the round can still be folded."""


class AppenderBroken(LogUnavailableError):
    """An earlier append's outcome is unknown: the partition must restart from the log."""


@dataclass(eq=False, slots=True)
class _Append:
    events: list[Event]
    commit: OffsetCommit | None
    future: asyncio.Future[list[int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    out: list[OutRecord] = field(default_factory=list)
    chained: list[Event] = field(default_factory=list)  # the events as encoded in ``out``


class JournalAppender:
    """Appends one partition's events through its fenced writer; see the module docstring."""

    def __init__(
        self,
        writer: PartitionWriter,
        *,
        topic: str,
        system: str,
        store: ProjectionStore,
        journal: JournalProjection,
        topic_names: Mapping[str, str],
        telemetry: Telemetry,
        on_broken: Callable[[BaseException], None],
        signer: RecordSigner | None = None,
    ) -> None:
        self._writer = writer
        self._topic = topic
        self._system = system
        self._store = store
        self._journal = journal
        self._topic_names = topic_names
        self._telemetry = telemetry
        self._on_broken = on_broken
        self._signer = signer
        self._queue: list[_Append] = []
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._closing = False
        self.broken: BaseException | None = None

    @property
    def partition(self) -> int:
        return self._writer.partition

    async def append(self, events: list[Event], commit: OffsetCommit | None = None) -> list[int]:
        """Append ``events`` (and ``commit``) atomically; returns once they are durable and
        folded.  Cancelling the caller does not cancel the append."""
        if self.broken is not None:
            raise AppenderBroken(f"partition {self.partition} must restart: {self.broken}")
        item = _Append(list(events), commit)
        item.future.add_done_callback(_retrieved)  # a cancelled caller no longer awaits it
        self._queue.append(item)
        self._wake.set()
        if self._pump is None:
            self._pump = asyncio.create_task(self._run(), name=f"appender:p{self.partition}")
        # A cancelled caller cancels ``item.future`` only: its round goes on (``_round``
        # skips futures that are done), what landed is folded.
        return await item.future

    async def close(self) -> None:
        """Stop the pump (appends in its round keep whatever outcome the writer gives them).
        Closing is not breaking: ``on_broken`` is not called for it (the owner closes its
        appender when it restarts; a callback would ask for the next restart, for ever)."""
        self._closing = True
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        self._fail_queued(AppenderBroken(f"partition {self.partition}: appender closed"))

    async def _run(self) -> None:
        batch: list[_Append] = []
        try:
            while self.broken is None:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch, self._queue = self._queue, []
                await self._round(batch)
                batch = []
        except BaseException as exc:  # cancelled mid-round, or the fold failed
            self._break(exc if isinstance(exc, Exception) else AppenderBroken("stopped"))
            raise
        finally:
            error = AppenderBroken(f"partition {self.partition} must restart: {self.broken}")
            self._queue[:0] = batch
            self._fail_queued(error)

    async def _round(self, batch: list[_Append]) -> None:
        outcomes: list[list[int] | BaseException]
        if len(batch) == 1:  # the common case: no task to gather
            try:
                outcomes = [await self._send(batch[0])]
            except Exception as exc:
                outcomes = [exc]
        else:
            outcomes = await asyncio.gather(
                *(self._send(item) for item in batch), return_exceptions=True
            )
        unknown = [o for o in outcomes if isinstance(o, BaseException) and not _definite(o)]
        if unknown:
            self._break(unknown[0])
        else:
            self._fold(batch, outcomes)
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.future.done():
                continue
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)

    async def _send(self, item: _Append) -> list[int]:
        group = item.commit.group if item.commit else ""
        with self._telemetry.send(
            self._system, self._topic, self.partition, item.events, group
        ) as send:
            item.chained, values = self._chained(item.events)
            item.out = [
                self._record(e, value, send.headers(e.run_id))
                for e, value in zip(item.events, values, strict=True)
            ]
            offsets = await self._writer.append(self._topic, item.out, commit=item.commit)
            send.appended(offsets)
        return offsets

    def _record(self, event: Event, value: bytes, tracing: Headers) -> OutRecord:
        """The record of ``event``: its type, the trace context and, when the worker holds
        the record key, the signature that tells it from a foreign append."""
        key = event.run_id.encode()
        headers: Headers = (("type", event.type.encode()), *tracing)
        if self._signer is not None:
            headers = (*headers, (HEADER, self._signer.sign(self.partition, key, value)))
        return OutRecord(key, value, headers)

    def _chained(self, events: list[Event]) -> tuple[list[Event], list[bytes]]:
        """The events with ``prev`` set and their records' values: each carries the sha256
        of the run's previous record (from this append, or as folded into the journal store),
        the log's own hash chain."""
        codec, heads = event_codec(), dict[str, str]()
        chained, out = list[Event](), list[bytes]()
        for event in events:
            prev = heads.get(event.run_id)
            if prev is None and event.seq > 0:
                before = self._journal.raw(event.run_id, event.seq - 1)
                prev = "" if before is None else record_hash(before)
            linked = replace(event, prev=prev or "")
            value = codec.encode(linked)
            heads[event.run_id] = record_hash(value)
            chained.append(linked)
            out.append(value)
        return chained, out

    def _fold(self, batch: list[_Append], outcomes: list[list[int] | BaseException]) -> None:
        own = [
            (Record(self._topic, self.partition, offset, out.key, out.value, out.headers), event)
            for item, outcome in zip(batch, outcomes, strict=True)
            if not isinstance(outcome, BaseException)
            for offset, out, event in zip(outcome, item.out, item.chained, strict=True)
        ]
        if own:
            own.sort(key=lambda pair: pair[0].offset)
            self._store.fold_own(own, [self._journal], topic_names=self._topic_names)

    def _break(self, error: BaseException) -> None:
        if self.broken is None:
            self.broken = error
            if not self._closing:
                self._on_broken(error)

    def _fail_queued(self, error: BaseException) -> None:
        queued, self._queue = self._queue, []
        for item in queued:
            if not item.future.done():
                item.future.set_exception(error)


def _retrieved(future: asyncio.Future[list[int]]) -> None:
    if not future.cancelled():
        future.exception()


def _definite(error: BaseException) -> bool:
    return isinstance(error, DEFINITE) and not isinstance(error, AppenderBroken)
