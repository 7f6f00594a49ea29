"""What the embedded log writes: records, committed group offsets and writer epochs.

Every function here runs on the write thread of a
:class:`~wakeline.topics.embedded.store.SqliteStore` in its own ``BEGIN IMMEDIATE``
transaction, so offsets are assigned under the database's write lock (dense and unique across
processes) and a fenced append checks the writer's epoch in the transaction that writes.
:func:`append_batch` runs many callers' appends in one such transaction (group commit).
"""

from __future__ import annotations

import sqlite3
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from wakeline.topics.embedded.schema import OFFSET_BITS, TopicMeta
from wakeline.topics.port import FencedError, Headers, OffsetCommit, OutRecord

HEADER = struct.Struct("<II")
"""Encoded headers: per header, the byte lengths of name and value, then name and value."""

Append = tuple[TopicMeta, Sequence[int], Sequence[OutRecord]]
"""Records of one topic and the partition of each."""

_Row = tuple[int, bytes | None, bytes, bytes | None, int]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class AppendOp:
    """One caller's atomic append: record groups, and offset commits, checked against
    ``fence=(writer_id, epoch)`` when given."""

    groups: Sequence[Append]
    fence: tuple[str, int] | None
    commits: Sequence[OffsetCommit]


def encode_headers(headers: Headers) -> bytes | None:
    if not headers:
        return None
    parts: list[bytes] = []
    for name, value in headers:
        raw = name.encode("utf-8")
        parts += (HEADER.pack(len(raw), len(value)), raw, bytes(value))
    return b"".join(parts)


class Appended(NamedTuple):
    """What a committed :class:`AppendOp` got."""

    offsets: list[list[int]]
    """The offsets of each group's records."""
    transaction: int
    """The number of the transaction it went in (1, 2, ... for one store)."""
    timestamp_ms: int
    """The timestamp of its records."""


def append_batch(
    conn: sqlite3.Connection, ops: Sequence[AppendOp]
) -> tuple[list[list[list[int]] | FencedError], int]:
    """Several callers' appends in ONE transaction: a group commit.

    Each op gets its own outcome: the offsets of each of its groups' records, or the
    :class:`FencedError` of a fenced writer (checked before anything of that op is written,
    so a fenced op writes nothing and the others still land).  Offsets follow the order of
    ``ops``.  Also returns the records' timestamp.
    """
    conn.execute("BEGIN IMMEDIATE")
    ts = now_ms()
    epochs: dict[str, int | None] = {}
    ends: dict[int, int] = {}  # partitions.id -> next offset, as this transaction moves it
    rows: list[_Row] = []
    latest: dict[tuple[str, str, int], int] = {}
    out: list[list[list[int]] | FencedError] = []
    for op in ops:
        if op.fence is not None:
            error = _fenced(conn, epochs, *op.fence)
            if error is not None:
                out.append(error)
                continue
        out.append(
            [_insert(conn, ends, rows, meta, parts, recs, ts) for meta, parts, recs in op.groups]
        )
        for c in op.commits:
            key = (c.group, c.topic, c.partition)
            latest[key] = max(latest.get(key, -1), c.next_offset)
    conn.executemany(
        "UPDATE partitions SET next_offset = ? WHERE id = ?", [(o, p) for p, o in ends.items()]
    )
    conn.executemany(
        "INSERT INTO records (id, key, value, headers, timestamp_ms) VALUES (?, ?, ?, ?, ?)",
        rows,
    )
    for (group, topic, partition), next_offset in latest.items():
        _upsert_offsets(conn, group, topic, {partition: next_offset})
    conn.execute("COMMIT")
    return out, ts


def _insert(
    conn: sqlite3.Connection,
    ends: dict[int, int],
    rows: list[_Row],
    meta: TopicMeta,
    partitions: Sequence[int],
    records: Sequence[OutRecord],
    ts: int,
) -> list[int]:
    """Add the rows of ``records`` to ``rows``, each at the next offset of its partition."""
    offsets: list[int] = []
    for partition, record in zip(partitions, records, strict=True):
        pid = meta.ids[partition]
        offset = ends.get(pid)
        if offset is None:
            row = conn.execute("SELECT next_offset FROM partitions WHERE id = ?", (pid,))
            offset = int(row.fetchone()[0])
        ends[pid] = offset + 1
        offsets.append(offset)
        rows.append(
            (
                (pid << OFFSET_BITS) | offset,
                record.key,
                record.value,
                encode_headers(record.headers),
                ts,
            )
        )
    return offsets


def commit_offsets(
    conn: sqlite3.Connection, group: str, topic: str, offsets: dict[int, int]
) -> None:
    conn.execute("BEGIN IMMEDIATE")
    _upsert_offsets(conn, group, topic, offsets)
    conn.execute("COMMIT")


def open_writer(conn: sqlite3.Connection, writer_id: str, partition: int) -> int:
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


def _fenced(
    conn: sqlite3.Connection, epochs: dict[str, int | None], writer_id: str, epoch: int
) -> FencedError | None:
    """The error of an append by ``writer_id`` at ``epoch`` if a newer epoch fenced it
    (``epochs`` caches what this transaction read)."""
    if writer_id not in epochs:
        row = conn.execute("SELECT epoch FROM writers WHERE writer_id = ?", (writer_id,))
        found = row.fetchone()
        epochs[writer_id] = None if found is None else int(found[0])
    current = epochs[writer_id]
    if current == epoch:
        return None
    return FencedError(
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
