"""The embedded backend of the log port: one machine, zero services.

The log lives in a data directory, in one SQLite database ``<data_dir>/log.sqlite3`` in WAL
mode (stdlib :mod:`sqlite3`).  Open it with ``log = await EmbeddedLog.open(data_dir)`` and
``await log.close()`` it (or ``async with await EmbeddedLog.open(data_dir) as log``).

Durability (``sync``):

* ``"normal"`` (default) -- ``PRAGMA synchronous=NORMAL``: an append that returned is in the
  WAL file when it returns, so it survives the process being killed (SIGKILL, OOM, crash) at
  any point.  After a power loss or an OS crash the last commits before it may be lost (the WAL
  is fsynced at checkpoints only), but the log is never torn or corrupted.
* ``"full"`` -- ``PRAGMA synchronous=FULL``: the WAL is fsynced on every commit, so an
  acknowledged append survives power loss too; every append pays an fsync.

A transaction is never read half-written: WAL frames are checksummed and a commit that did not
complete is ignored on recovery.

Several processes (a worker, the CLI, an API server) may open the same data directory at
once.  Offsets are dense per (topic, partition) from 0 and assigned inside the ``BEGIN
IMMEDIATE`` write transaction, so concurrent writers never duplicate or skip one.  A writer
waits for the database lock (SQLite's busy handler, then retries) and raises
:class:`LogUnavailableError` after ``lock_timeout_s``.

No SQLite call that can wait runs on the event loop: each :class:`EmbeddedLog` has one write
thread and one read thread, each with its own connection.  The one exception is the *probe*
before a read: one primary-key lookup of the partition's end offset on a read-only connection
that never waits for a lock, so a read that would find nothing makes no trip to the read
thread.  A waiting read woken by an append of this :class:`EmbeddedLog` takes the new records
from its *tail* (the last committed records of each partition,
:mod:`~wakeline.topics.embedded.tail`), exactly as SQLite holds them; every other read reads
the database.  Group commit: the appends that queue up on the write
thread while it is busy -- from any task, writer or partition of this :class:`EmbeddedLog` --
go in one transaction (one ``COMMIT``, so one fsync under ``sync="full"``); each is still
atomic, a fenced one fails alone, and each caller is answered only once that ``COMMIT``
returned, so an acknowledged append is as durable as the ``sync`` mode says.

A :meth:`EmbeddedLog.read` that finds nothing waits: appends of the same :class:`EmbeddedLog`
wake it at once, appends of other processes (or other :class:`EmbeddedLog` objects) are seen
by polling, every 2 ms growing to 50 ms.

Partitioning: a keyed record goes to :func:`~wakeline.topics.partitioner.partition_for` of its
key, like Kafka's default partitioner; a record whose key is ``None`` goes to partition 0.
:meth:`EmbeddedLog.create_topics` creates missing topics only: an existing topic keeps its
partition count even when the spec asks for another one (no error, like ``kafka-topics
--create --if-not-exists``).  Reads, appends and end offsets of a missing topic, or of a
partition outside the topic, raise :class:`UnknownTopicError`.  A record larger than
``max_record_bytes`` (key + value + headers; default 1 MiB like Kafka's
``message.max.bytes``) raises :class:`RecordTooLargeError` and nothing of its batch is written.

Fencing: ``writer(writer_id, partition)`` bumps the epoch of ``writer_id`` (one row per
``writer_id``, like a Kafka transactional id: opening it for any partition fences every older
writer with that id); each fenced append checks the epoch in its own write transaction.

Consumer groups: see :mod:`wakeline.topics.embedded.groups`.

A cancelled ``append`` may still land: the write runs on its thread to the end (the same as a
Kafka produce whose response was lost).  Timestamps are wall-clock milliseconds at append.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from wakeline.fsutil import private_dir
from wakeline.topics import contract
from wakeline.topics.embedded import appends, reads, schema
from wakeline.topics.embedded.announce import sql_hosted
from wakeline.topics.embedded.appends import Append
from wakeline.topics.embedded.groups import EmbeddedConsumer
from wakeline.topics.embedded.notify import Notifier, wait_event
from wakeline.topics.embedded.schema import TopicMeta
from wakeline.topics.embedded.store import SqliteStore, SyncMode
from wakeline.topics.embedded.tail import Tail
from wakeline.topics.embedded.threads import Job
from wakeline.topics.embedded.writer import EmbeddedWriter
from wakeline.topics.hosting import HostingSource, Pair
from wakeline.topics.port import (
    AssignmentListener,
    OffsetCommit,
    OutRecord,
    Record,
    TopicSpec,
)
from wakeline.topics.signing import KEY_FILE, create_key_file

__all__ = ["DB_FILENAME", "EmbeddedConsumer", "EmbeddedLog", "EmbeddedWriter"]

DB_FILENAME = "log.sqlite3"
DEFAULT_MAX_RECORD_BYTES = 1024 * 1024
_WAIT_MIN_S = 0.002
_WAIT_MAX_S = 0.05


class EmbeddedLog:
    """A :class:`~wakeline.topics.port.Log` stored in ``<data_dir>/log.sqlite3``.

    Create it with :meth:`open` (the constructor does no I/O; :meth:`start` opens it) and use
    it from the event loop it was opened on.
    """

    system = "wakeline-embedded"

    def __init__(
        self,
        data_dir: str | Path,
        *,
        sync: SyncMode = "normal",
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        lock_timeout_s: float = 30.0,
    ) -> None:
        contract.check_max_record_bytes(max_record_bytes)
        self.data_dir = Path(data_dir)
        self.max_record_bytes = max_record_bytes
        self._notifier = Notifier()
        self._tail = Tail()
        self._store = SqliteStore(
            self.data_dir / DB_FILENAME,
            sync=sync,
            lock_timeout_s=lock_timeout_s,
            delivered=self._appended,
        )
        self._consumers: set[EmbeddedConsumer] = set()
        self._closed = False

    @classmethod
    async def open(
        cls,
        data_dir: str | Path,
        *,
        sync: SyncMode = "normal",
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        lock_timeout_s: float = 30.0,
    ) -> EmbeddedLog:
        """Open (creating the directory and database if needed) the log in ``data_dir``."""
        log = cls(
            data_dir, sync=sync, max_record_bytes=max_record_bytes, lock_timeout_s=lock_timeout_s
        )
        await log.start()
        return log

    @property
    def key_file(self) -> Path | None:
        """``<data_dir>/record.key``, made with a new log (a log made before signatures
        existed has none, so its unsigned records stay readable)."""
        file = self.data_dir / KEY_FILE
        return file if file.exists() else None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, functools.partial(_mkdir, self.data_dir))
        if not self._store.file.exists():  # a new log is signed from its first record
            await loop.run_in_executor(None, create_key_file, self.data_dir / KEY_FILE)
        await self._store.write(functools.partial(schema.init_schema, file=self._store.file))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def sync(self) -> SyncMode:
        return self._store.sync

    # -- topics -----------------------------------------------------------------------------

    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        contract.check_topic_specs(specs)
        op = functools.partial(schema.create_topics, specs=list(specs), file=self._store.file)
        await self._store.write(op)

    async def partition_count(self, topic: str) -> int:
        return (await self.meta(topic)).partitions

    async def meta(self, topic: str) -> TopicMeta:
        """The topic's metadata (:class:`UnknownTopicError` if missing); cached once seen."""
        meta = self._store.cached_meta(topic)
        if meta is None:
            meta = await self._store.read(functools.partial(self._store.meta, topic=topic))
        return meta

    # -- records ----------------------------------------------------------------------------

    async def append(self, topic: str, records: Sequence[OutRecord]) -> list[tuple[int, int]]:
        meta = await self.meta(topic)
        self.check_sizes(topic, records)
        if not records:
            return []
        partitions = contract.key_partitions(records, meta.partitions)
        [offsets] = await self.write_groups([(meta, partitions, records)], fence=None, commits=[])
        return list(zip(partitions, offsets, strict=True))

    async def write_groups(
        self,
        groups: Sequence[Append],
        *,
        fence: tuple[str, int] | None,
        commits: Sequence[OffsetCommit],
    ) -> list[list[int]]:
        """Several appends and commits, atomically (in a transaction the store may share with
        other appends queued at the same time); wakes readers of what it touched."""
        return (await self._store.append(appends.AppendOp(groups, fence, commits))).offsets

    def _appended(self, jobs: list[Job]) -> None:
        """On the loop, once a batch of the write thread's jobs is answered: keep the records
        that landed in the tail, then wake the readers of their partitions -- one callback
        later, so that the appenders, woken first, hand their results on before readers run."""
        for job in jobs:
            if isinstance(job.op, appends.AppendOp) and job.error is None:
                result: appends.Appended = job.result
                for (meta, partitions, records), offsets in zip(
                    job.op.groups, result.offsets, strict=True
                ):
                    self._keep(meta.name, partitions, records, offsets, result.timestamp_ms)
        asyncio.get_running_loop().call_soon(self._notifier.appended, jobs)

    def _keep(
        self,
        topic: str,
        partitions: Sequence[int],
        records: Sequence[OutRecord],
        offsets: Sequence[int],
        ts: int,
    ) -> None:
        first = partitions[0] if partitions else 0
        if all(p == first for p in partitions):  # a fenced writer's append: one partition
            self._tail.add(topic, first, offsets, records, ts)
            return
        for partition in sorted(set(partitions)):
            picked = [i for i, p in enumerate(partitions) if p == partition]
            self._tail.add(
                topic, partition, [offsets[i] for i in picked], [records[i] for i in picked], ts
            )

    @property
    def tail(self) -> Tail:
        """The records this log appended last (see :mod:`wakeline.topics.embedded.tail`)."""
        return self._tail

    def check_sizes(self, topic: str, records: Sequence[OutRecord]) -> None:
        contract.check_record_sizes(topic, records, self.max_record_bytes)

    async def read(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = 1000,
        timeout_s: float = 0.0,
    ) -> list[Record]:
        meta = await self.meta(topic)
        meta.check(partition)
        contract.check_read_args(offset, max_records)
        op = functools.partial(
            reads.read_records, meta=meta, partition=partition, offset=offset, limit=max_records
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        pause = _WAIT_MIN_S
        waited = False
        while True:
            wake = self._notifier.event(topic, partition) if timeout_s > 0 else None
            # The tail only once this read has waited: what it holds from ``offset`` on was
            # committed after the database showed nothing there, so it is what the file holds
            # (a read of records that were there already reads the file: an audit sees it).
            records = self._tail.read(topic, partition, offset, max_records) if waited else None
            if records is None:
                found = self._store.probe(meta, partition, offset)
                records = [] if found is False else await self._store.read(op)
            remaining = deadline - loop.time()
            if records or remaining <= 0 or wake is None:
                return records
            await wait_event(wake, min(pause, remaining))
            pause, waited = min(pause * 2, _WAIT_MAX_S), True

    async def end_offset(self, topic: str, partition: int) -> int:
        meta = await self.meta(topic)
        meta.check(partition)
        return await self._store.read(
            functools.partial(reads.end_offset, meta=meta, partition=partition)
        )

    async def committed(self, group: str, topic: str, partition: int) -> int | None:
        found = await self._store.read(
            functools.partial(reads.committed, group=group, topic=topic, partitions=(partition,))
        )
        return found.get(partition)

    # -- groups and writers -----------------------------------------------------------------

    def consumer(
        self,
        group: str,
        topic: str,
        listener: AssignmentListener,
        *,
        session_timeout_s: float = 10.0,
        instance_id: str | None = None,
        max_poll_records: int = 500,
        hosting: HostingSource | None = None,
    ) -> EmbeddedConsumer:
        """A new member of ``group`` over ``topic``; it joins at its first :meth:`poll`."""
        contract.check_open(self._closed, "embedded log")
        consumer = EmbeddedConsumer(
            self,
            group,
            topic,
            listener,
            session_timeout_s=session_timeout_s,
            member_id=instance_id,
            max_poll_records=max_poll_records,
            hosting=hosting,
        )
        self._consumers.add(consumer)
        return consumer

    async def hosted(self, group: str, topic: str) -> frozenset[Pair] | None:
        return await self._store.read(
            functools.partial(sql_hosted, data_dir=self.data_dir, group=group, topic=topic)
        )

    async def writer(self, writer_id: str, partition: int) -> EmbeddedWriter:
        contract.check_writer_partition(partition)
        epoch = await self._store.write(
            functools.partial(appends.open_writer, writer_id=writer_id, partition=partition)
        )
        return EmbeddedWriter(self, writer_id, partition, epoch)

    @property
    def store(self) -> SqliteStore:
        return self._store

    @property
    def notifier(self) -> Notifier:
        return self._notifier

    def forget(self, consumer: EmbeddedConsumer) -> None:
        self._consumers.discard(consumer)

    async def close(self) -> None:
        """Close the open consumers (gracefully: they leave their groups), then the database.

        A listener error raised while closing a consumer is re-raised after everything closed.
        """
        if self._closed:
            return
        self._closed = True
        await contract.close_then_raise(self._consumers, self._store.close)


def _mkdir(path: Path) -> None:
    private_dir(path)
