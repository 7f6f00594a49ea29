"""SQLite storage of the embedded log: the database file, its connections and threads.

Everything that touches SQLite is blocking and runs on one of two dedicated threads of a
:class:`SqliteStore` (one for writes, one for reads, :mod:`~wakeline.topics.embedded.threads`),
each with its own connection;
:mod:`wakeline.topics.embedded.log` and :mod:`wakeline.topics.embedded.groups` only ``await``
:meth:`SqliteStore.write` / :meth:`SqliteStore.read` with an operation of
:mod:`~wakeline.topics.embedded.schema` (tables, topics),
:mod:`~wakeline.topics.embedded.appends` (records, offsets, writers) or
:mod:`~wakeline.topics.embedded.reads`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from wakeline.topics import contract
from wakeline.topics.embedded.appends import Appended, AppendOp, append_batch
from wakeline.topics.embedded.schema import TopicMeta, load_meta
from wakeline.topics.embedded.threads import Delivered, Job, OpThread
from wakeline.topics.port import LogError, LogUnavailableError

SyncMode = Literal["normal", "full"]
T = TypeVar("T")

_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _BUSY_CODES
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SqliteStore:
    """The SQLite file of one :class:`~wakeline.topics.embedded.log.EmbeddedLog` and its threads.

    Write operations run on the write thread; read operations on the read thread.  Both retry
    ``SQLITE_BUSY``/``SQLITE_LOCKED`` (SQLite's busy handler waits first) and raise
    :class:`LogUnavailableError` once ``lock_timeout_s`` has passed.

    Group commit: the appends (:meth:`append`) that queue up on the write thread while it is
    busy run together in ONE transaction (one ``COMMIT``, so one fsync under ``sync=full``),
    whichever writers and partitions they come from; each gets its own outcome (a fenced one
    fails alone) and every caller is answered only after that ``COMMIT`` returned.
    ``delivered`` is called on the loop with each answered batch of write jobs.
    """

    def __init__(
        self,
        file: Path,
        *,
        sync: SyncMode,
        lock_timeout_s: float,
        delivered: Delivered | None = None,
    ) -> None:
        if sync not in ("normal", "full"):
            raise ValueError(f"sync must be 'normal' or 'full', not {sync!r}")
        self.file = file
        self.sync: SyncMode = sync
        self.lock_timeout_s = lock_timeout_s
        self._topics: dict[str, TopicMeta] = {}
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._pconn: sqlite3.Connection | None = None  # the probe's, on the loop thread
        self._wthread = OpThread("wakeline-log-write", self._write_batch, delivered)
        self._rthread = OpThread("wakeline-log-read", self._read_batch)
        self.closed = False
        self._closing = False
        self.transactions = 0
        """Append transactions committed so far (each holds one or more appends)."""
        self.appends = 0
        """Appends (:meth:`append` calls) committed so far."""

    # -- threads ----------------------------------------------------------------------------

    async def write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` with the write connection on the write thread (retried while busy)."""
        contract.check_open(self.closed or self._closing, f"embedded log {self.file}")
        return cast(T, await self._wthread.submit(op))

    async def append(self, op: AppendOp) -> Appended:
        """Run one append on the write thread, in a transaction it may share with the other
        appends queued at the same time (group commit)."""
        contract.check_open(self.closed or self._closing, f"embedded log {self.file}")
        return cast(Appended, await self._wthread.submit(op))

    async def read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` with the read connection on the read thread (retried while busy)."""
        contract.check_open(self.closed or self._closing, f"embedded log {self.file}")
        return cast(T, await self._rthread.submit(op))

    def probe(self, meta: TopicMeta, partition: int, offset: int) -> bool | None:
        """Whether ``partition`` has a record at ``offset``, asked on the calling (loop)
        thread: one primary-key lookup of the partition's end offset on a read-only
        connection that never waits for a lock (a WAL reader does not wait for writers).
        ``None`` when it cannot tell right now (busy, closed): read on the read thread.

        It spares a read that would find nothing the trip to the read thread and back.
        """
        if self._closing:
            return None
        try:
            conn = self._pconn
            if conn is None:
                conn = sqlite3.connect(self.file, timeout=0, isolation_level=None)
                conn.execute("PRAGMA query_only=1")
                self._pconn = conn
            rows = conn.execute(  # fetchall: the statement (its read snapshot) ends here
                "SELECT next_offset FROM partitions WHERE id = ?", (meta.ids[partition],)
            ).fetchall()
        except sqlite3.Error:
            return None
        return bool(rows) and int(rows[0][0]) > offset

    async def close(self) -> None:
        if self.closed or self._closing:
            return
        self._closing = True
        if self._pconn is not None:
            self._pconn.close()
            self._pconn = None
        try:
            await self._wthread.submit(_CLOSE)
            await self._rthread.submit(_CLOSE)
        finally:
            self.closed = True
            self._wthread.stop()
            self._rthread.stop()

    @property
    def read_trips(self) -> int:
        """Batches the read thread ran so far (each one trip there and back for the loop)."""
        return self._rthread.batches

    @property
    def queued_writes(self) -> int:
        """Write operations queued and not yet taken by the write thread."""
        return self._wthread.queued

    # -- the threads' side ------------------------------------------------------------------

    def _write_batch(self, jobs: list[Job]) -> None:
        """Runs on the write thread: each run of consecutive appends in one transaction."""
        start = 0
        while start < len(jobs):
            end = start
            while end < len(jobs) and isinstance(jobs[end].op, AppendOp):
                end += 1
            if end > start:
                self._append_together(jobs[start:end])
                start = end
            else:
                self._one(jobs[start], writer=True)
                start += 1

    def _append_together(self, jobs: list[Job]) -> None:
        ops = [cast(AppendOp, job.op) for job in jobs]
        try:
            outcomes, ts = self._run(True, lambda conn: append_batch(conn, ops))
        except BaseException as exc:  # nothing of the transaction landed, or unknown
            for job in jobs:
                job.error = exc
            return
        self.transactions += 1
        for job, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                job.error = outcome
            else:
                job.result = Appended(outcome, self.transactions, ts)
                self.appends += 1

    def _read_batch(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._one(job, writer=False)

    def _one(self, job: Job, *, writer: bool) -> None:
        try:
            if job.op is _CLOSE:
                self._close_conn(writer)
            else:
                job.result = self._run(writer, job.op)
        except BaseException as exc:
            job.error = exc

    def _close_conn(self, writer: bool) -> None:
        conn = self._wconn if writer else self._rconn
        if conn is not None:
            conn.close()
        if writer:
            self._wconn = None
        else:
            self._rconn = None

    def _connect(self, writer: bool) -> sqlite3.Connection:
        if writer and not os.path.exists(self.file):
            # created readable by its owner only; SQLite gives the -wal and -shm files the
            # database file's permissions
            os.close(os.open(self.file, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(
            self.file,
            timeout=self.lock_timeout_s,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )
        try:
            if writer:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise LogError(f"{self.file}: cannot switch to WAL mode (got {mode!r})")
                conn.execute(f"PRAGMA synchronous={self.sync.upper()}")
                conn.execute("PRAGMA journal_size_limit=67108864")
            else:
                conn.execute("PRAGMA query_only=1")
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, writer: bool, op: Callable[[sqlite3.Connection], Any]) -> Any:
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.001
        while True:
            conn = self._wconn if writer else self._rconn
            try:
                if conn is None:
                    # an op queued before close() began never opens the file again
                    contract.check_open(self._closing, f"embedded log {self.file}")
                    conn = self._connect(writer)
                    if writer:
                        self._wconn = conn
                    else:
                        self._rconn = conn
                return op(conn)
            except sqlite3.OperationalError as exc:
                _rollback(conn)
                if not _is_busy(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise LogUnavailableError(
                        f"{self.file} stayed locked for more than {self.lock_timeout_s}s: {exc}"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            except BaseException:
                _rollback(conn)
                raise

    # -- topics ---------------------------------------------------------------------------

    def cached_meta(self, topic: str) -> TopicMeta | None:
        return self._topics.get(topic)

    def meta(self, conn: sqlite3.Connection, topic: str) -> TopicMeta:
        """The topic's metadata (cached forever once seen: topics never change)."""
        meta = self._topics.get(topic)
        if meta is None:
            meta = self._topics[topic] = load_meta(conn, topic)
        return meta


_CLOSE = object()
"""The job that closes a thread's connection."""


def _rollback(conn: sqlite3.Connection | None) -> None:
    if conn is not None and conn.in_transaction:
        conn.rollback()
