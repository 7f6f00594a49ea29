"""SQLite storage of the embedded log: schema, connections, threads and blocking operations.

Everything here that touches SQLite is blocking and runs on one of two dedicated threads of a
:class:`SqliteStore` (one for writes, one for reads), each with its own connection;
:mod:`wakeline.topics.embedded.log` and :mod:`wakeline.topics.embedded.groups` only ``await``
:meth:`SqliteStore.write` / :meth:`SqliteStore.read`.

Layout: a record's rowid is ``(partitions.id << 40) | offset``, so one partition is one
contiguous rowid range of the ``records`` table (reads are range scans of its clustered
b-tree, no secondary index).  That allows 2**40 offsets per partition and 2**23 partitions in
one log.  ``partitions.next_offset`` is the high watermark; it is read and bumped inside the
``BEGIN IMMEDIATE`` transaction that inserts the records, so offsets stay dense and unique
whatever the number of writing processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from wakeline.topics.port import (
    FencedError,
    Headers,
    LogError,
    LogUnavailableError,
    OffsetCommit,
    OutRecord,
    Record,
    TopicSpec,
    UnknownTopicError,
)

SyncMode = Literal["normal", "full"]
T = TypeVar("T")

OFFSET_BITS = 40
MAX_PARTITION_ROWS = 1 << (63 - OFFSET_BITS)
SCHEMA_VERSION = 1
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_HEADER = struct.Struct("<II")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    config TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partitions (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    UNIQUE (topic, partition)
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    key BLOB,
    value BLOB NOT NULL,
    headers BLOB,
    timestamp_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_members (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    member_id TEXT NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    session_timeout_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, member_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_owners (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS writers (
    writer_id TEXT PRIMARY KEY,
    partition INTEGER NOT NULL,
    epoch INTEGER NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class TopicMeta:
    """A topic's partition count and the ``partitions.id`` of each partition (never change)."""

    name: str
    partitions: int
    ids: tuple[int, ...]

    def check(self, partition: int) -> int:
        """The ``partitions.id`` of ``partition``; :class:`UnknownTopicError` if out of range."""
        if not 0 <= partition < self.partitions:
            raise UnknownTopicError(
                f"topic {self.name!r} has partitions 0..{self.partitions - 1}, not {partition}"
            )
        return self.ids[partition]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def encode_headers(headers: Headers) -> bytes | None:
    if not headers:
        return None
    parts: list[bytes] = []
    for name, value in headers:
        raw = name.encode("utf-8")
        parts += (_HEADER.pack(len(raw), len(value)), raw, bytes(value))
    return b"".join(parts)


def decode_headers(blob: bytes | None) -> Headers:
    if not blob:
        return ()
    out: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(blob):
        name_len, value_len = _HEADER.unpack_from(blob, pos)
        pos += _HEADER.size
        name = blob[pos : pos + name_len].decode("utf-8")
        pos += name_len
        out.append((name, blob[pos : pos + value_len]))
        pos += value_len
    return tuple(out)


def record_size(record: OutRecord) -> int:
    """Bytes a record counts against ``max_record_bytes``: key + value + header names/values."""
    size = len(record.value) + (len(record.key) if record.key is not None else 0)
    return size + sum(len(name.encode("utf-8")) + len(value) for name, value in record.headers)


class Notifier:
    """Wakes the readers of this process when records land (one event per waited-on key).

    ``event(topic, partition)`` is the event of one partition, ``event(topic, None)`` fires on
    an append to any partition of ``topic``.  Events are replaced once fired, so a waiter takes
    a fresh one *before* it looks for records and cannot miss a wake-up.
    """

    def __init__(self) -> None:
        self._events: dict[tuple[str, int | None], asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def event(self, topic: str, partition: int | None) -> asyncio.Event:
        key = (topic, partition)
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = asyncio.Event()
        return event

    def notify(self, topic: str, partitions: Iterable[int]) -> None:
        for key in [(topic, None), *((topic, p) for p in partitions)]:
            event = self._events.pop(key, None)
            if event is not None:
                event.set()

    def notify_threadsafe(self, topic: str, partitions: Iterable[int]) -> None:
        """Called from the write thread after a commit; a no-op when nobody waits."""
        loop = self._loop
        if self._events and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self.notify, topic, partitions)


async def wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Wait until ``event`` is set or ``timeout_s`` passed, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()


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

    # -- threads ----------------------------------------------------------------------------

    async def write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` with the write connection on the write thread (retried while busy)."""
        if self.closed:
            raise LogError(f"embedded log {self.file} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._wpool, self._run, True, op)

    async def read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` with the read connection on the read thread (retried while busy)."""
        if self.closed:
            raise LogError(f"embedded log {self.file} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._rpool, self._run, False, op)

    async def close(self) -> None:
        if self.closed:
            return
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

    # -- schema and topics ------------------------------------------------------------------

    def init_schema(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LogError(f"{self.file} has schema version {version}; this wakeline knows 1")
        if version == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")

    def cached_meta(self, topic: str) -> TopicMeta | None:
        return self._topics.get(topic)

    def meta(self, conn: sqlite3.Connection, topic: str) -> TopicMeta:
        """The topic's metadata (cached forever once seen: topics never change)."""
        meta = self._topics.get(topic)
        if meta is not None:
            return meta
        row = conn.execute("SELECT partitions FROM topics WHERE name = ?", (topic,)).fetchone()
        if row is None:
            raise UnknownTopicError(f"unknown topic {topic!r} (create it first)")
        ids = tuple(
            r[0]
            for r in conn.execute(
                "SELECT id FROM partitions WHERE topic = ? ORDER BY partition", (topic,)
            )
        )
        meta = TopicMeta(topic, int(row[0]), ids)
        self._topics[topic] = meta
        return meta

    def create_topics(self, conn: sqlite3.Connection, specs: Sequence[TopicSpec]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        for spec in specs:
            cur = conn.execute(
                "INSERT OR IGNORE INTO topics (name, partitions, replication, config)"
                " VALUES (?, ?, ?, ?)",
                (spec.name, spec.partitions, spec.replication, json.dumps(dict(spec.config))),
            )
            if cur.rowcount == 0:
                continue  # exists: its partition count is kept, whatever the spec says
            for partition in range(spec.partitions):
                cur = conn.execute(
                    "INSERT INTO partitions (topic, partition, next_offset) VALUES (?, ?, 0)",
                    (spec.name, partition),
                )
                if cur.lastrowid is None or cur.lastrowid >= MAX_PARTITION_ROWS:
                    raise LogError(f"{self.file}: too many partitions in one embedded log")
        conn.execute("COMMIT")

    # -- records ----------------------------------------------------------------------------

    def append(
        self,
        conn: sqlite3.Connection,
        meta: TopicMeta,
        partitions: Sequence[int],
        records: Sequence[OutRecord],
        fence: tuple[str, int] | None = None,
        commit: OffsetCommit | None = None,
    ) -> list[int]:
        """Append ``records[i]`` to ``partitions[i]`` in one transaction; their offsets.

        With ``fence=(writer_id, epoch)`` nothing is written unless ``epoch`` is the writer's
        current one; ``commit`` is stored in the same transaction.
        """
        commits = [commit] if commit is not None else []
        return self.append_groups(conn, [(meta, partitions, records)], fence, commits)[0]

    def append_groups(
        self,
        conn: sqlite3.Connection,
        groups: Sequence[tuple[TopicMeta, Sequence[int], Sequence[OutRecord]]],
        fence: tuple[str, int] | None,
        commits: Sequence[OffsetCommit],
    ) -> list[list[int]]:
        """Several appends (and offset commits) in ONE transaction: a group commit."""
        conn.execute("BEGIN IMMEDIATE")
        if fence is not None:
            _check_fence(conn, *fence)
        ts = now_ms()
        out = [self._insert(conn, meta, parts, recs, ts) for meta, parts, recs in groups]
        latest: dict[tuple[str, str, int], int] = {}
        for c in commits:
            key = (c.group, c.topic, c.partition)
            latest[key] = max(latest.get(key, -1), c.next_offset)
        for (group, topic, partition), next_offset in latest.items():
            _upsert_offsets(conn, group, topic, {partition: next_offset})
        conn.execute("COMMIT")
        return out

    def _insert(
        self,
        conn: sqlite3.Connection,
        meta: TopicMeta,
        partitions: Sequence[int],
        records: Sequence[OutRecord],
        ts: int,
    ) -> list[int]:
        counts: dict[int, int] = {}
        for partition in partitions:
            counts[partition] = counts.get(partition, 0) + 1
        next_offset: dict[int, int] = {}
        for partition, count in counts.items():
            pid = meta.ids[partition]
            row = conn.execute("SELECT next_offset FROM partitions WHERE id = ?", (pid,)).fetchone()
            next_offset[partition] = int(row[0])
            conn.execute(
                "UPDATE partitions SET next_offset = ? WHERE id = ?", (int(row[0]) + count, pid)
            )
        offsets: list[int] = []
        rows: list[tuple[int, bytes | None, bytes, bytes | None, int]] = []
        for partition, record in zip(partitions, records, strict=True):
            offset = next_offset[partition]
            next_offset[partition] = offset + 1
            offsets.append(offset)
            rows.append(
                (
                    (meta.ids[partition] << OFFSET_BITS) | offset,
                    record.key,
                    record.value,
                    encode_headers(record.headers),
                    ts,
                )
            )
        conn.executemany(
            "INSERT INTO records (id, key, value, headers, timestamp_ms) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        return offsets

    def read_records(
        self, conn: sqlite3.Connection, meta: TopicMeta, partition: int, offset: int, limit: int
    ) -> list[Record]:
        base = meta.ids[partition] << OFFSET_BITS
        rows = conn.execute(
            "SELECT id, key, value, headers, timestamp_ms FROM records"
            " WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (base + offset, base + (1 << OFFSET_BITS), limit),
        ).fetchall()
        return [
            Record(meta.name, partition, rid - base, key, value, decode_headers(hdrs), ts)
            for rid, key, value, hdrs, ts in rows
        ]

    def fetch(
        self, conn: sqlite3.Connection, meta: TopicMeta, wants: Sequence[tuple[int, int, int]]
    ) -> list[Record]:
        """Records for each ``(partition, offset, limit)`` that has any, in the given order."""
        ends = dict(
            conn.execute(
                "SELECT partition, next_offset FROM partitions WHERE topic = ?", (meta.name,)
            )
        )
        out: list[Record] = []
        for partition, offset, limit in wants:
            if ends.get(partition, 0) > offset:
                out += self.read_records(conn, meta, partition, offset, limit)
        return out

    def end_offset(self, conn: sqlite3.Connection, meta: TopicMeta, partition: int) -> int:
        row = conn.execute(
            "SELECT next_offset FROM partitions WHERE id = ?", (meta.ids[partition],)
        ).fetchone()
        return int(row[0])

    # -- group offsets and writers -----------------------------------------------------------------

    def committed(
        self, conn: sqlite3.Connection, group: str, topic: str, partitions: Iterable[int]
    ) -> dict[int, int]:
        wanted = set(partitions)
        rows = conn.execute(
            "SELECT partition, next_offset FROM group_offsets WHERE grp = ? AND topic = ?",
            (group, topic),
        )
        return {int(p): int(o) for p, o in rows if p in wanted}

    def commit(
        self, conn: sqlite3.Connection, group: str, topic: str, offsets: dict[int, int]
    ) -> None:
        conn.execute("BEGIN IMMEDIATE")
        _upsert_offsets(conn, group, topic, offsets)
        conn.execute("COMMIT")

    def open_writer(self, conn: sqlite3.Connection, writer_id: str, partition: int) -> int:
        """Bump ``writer_id``'s epoch (fencing its older incarnations); the new epoch."""
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO writers (writer_id, partition, epoch) VALUES (?, ?, 1)"
            " ON CONFLICT (writer_id) DO UPDATE"
            " SET epoch = epoch + 1, partition = excluded.partition",
            (writer_id, partition),
        )
        row = conn.execute("SELECT epoch FROM writers WHERE writer_id = ?", (writer_id,)).fetchone()
        conn.execute("COMMIT")
        return int(row[0])


def _rollback(conn: sqlite3.Connection | None) -> None:
    if conn is not None and conn.in_transaction:
        conn.rollback()


def _check_fence(conn: sqlite3.Connection, writer_id: str, epoch: int) -> None:
    row = conn.execute("SELECT epoch FROM writers WHERE writer_id = ?", (writer_id,)).fetchone()
    current = None if row is None else int(row[0])
    if current != epoch:
        raise FencedError(
            f"writer {writer_id!r} (epoch {epoch}) was fenced by a newer one (epoch {current})"
        )


def _upsert_offsets(
    conn: sqlite3.Connection, group: str, topic: str, offsets: dict[int, int]
) -> None:
    conn.executemany(
        "INSERT INTO group_offsets (grp, topic, partition, next_offset) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
        [(group, topic, p, o) for p, o in offsets.items()],
    )
