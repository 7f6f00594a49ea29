"""SQLite storage of the embedded log: the database file, its connections and threads.

Everything that touches SQLite is blocking and runs on one of two dedicated threads of a
:class:`SqliteStore` (one for writes, one for reads), each with its own connection;
:mod:`wakeline.topics.embedded.log` and :mod:`wakeline.topics.embedded.groups` only ``await``
:meth:`SqliteStore.write` / :meth:`SqliteStore.read` with an operation of
:mod:`~wakeline.topics.embedded.schema` (tables, topics),
:mod:`~wakeline.topics.embedded.appends` (records, offsets, writers) or
:mod:`~wakeline.topics.embedded.reads`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

from wakeline.topics import contract
from wakeline.topics.embedded.schema import TopicMeta, load_meta
from wakeline.topics.port import LogError, LogUnavailableError

SyncMode = Literal["normal", "full"]
T = TypeVar("T")

_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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
    """

    def __init__(self, file: Path, *, sync: SyncMode, lock_timeout_s: float) -> None:
        if sync not in ("normal", "full"):
            raise ValueError(f"sync must be 'normal' or 'full', not {sync!r}")
        self.file = file
        self.sync: SyncMode = sync
        self.lock_timeout_s = lock_timeout_s
        self._topics: dict[str, TopicMeta] = {}
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._wpool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wakeline-log-write")
        self._rpool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wakeline-log-read")
        self.closed = False
        self._closing = False

    # -- threads ----------------------------------------------------------------------------

    async def write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` with the write connection on the write thread (retried while busy)."""
        contract.check_open(self.closed or self._closing, f"embedded log {self.file}")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._wpool, self._run, True, op)

    async def read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` with the read connection on the read thread (retried while busy)."""
        contract.check_open(self.closed or self._closing, f"embedded log {self.file}")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._rpool, self._run, False, op)

    async def close(self) -> None:
        if self.closed or self._closing:
            return
        self._closing = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._wpool, self._close_conn, True)
            await loop.run_in_executor(self._rpool, self._close_conn, False)
        finally:
            self.closed = True
            self._wpool.shutdown(wait=False)
            self._rpool.shutdown(wait=False)

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

    def _run(self, writer: bool, op: Callable[[sqlite3.Connection], T]) -> T:
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


def _rollback(conn: sqlite3.Connection | None) -> None:
    if conn is not None and conn.in_transaction:
        conn.rollback()
