"""What the embedded log writes: records, committed group offsets and writer epochs.

Every function here runs on the write thread of a
:class:`~wakeline.topics.embedded.store.SqliteStore` in its own ``BEGIN IMMEDIATE``
transaction, so offsets are assigned under the database's write lock (dense and unique across
processes) and a fenced append checks the writer's epoch in the transaction that writes.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Sequence

from wakeline.topics.embedded.schema import OFFSET_BITS, TopicMeta
from wakeline.topics.embedded.store import now_ms
from wakeline.topics.port import FencedError, Headers, OffsetCommit, OutRecord

HEADER = struct.Struct("<II")
"""Encoded headers: per header, the byte lengths of name and value, then name and value."""

Append = tuple[TopicMeta, Sequence[int], Sequence[OutRecord]]
"""Records of one topic and the partition of each."""


def encode_headers(headers: Headers) -> bytes | None:
    if not headers:
        return None
    parts: list[bytes] = []
    for name, value in headers:
        raw = name.encode("utf-8")
        parts += (HEADER.pack(len(raw), len(value)), raw, bytes(value))
    return b"".join(parts)


def append_groups(
    conn: sqlite3.Connection,
    groups: Sequence[Append],
    fence: tuple[str, int] | None,
    commits: Sequence[OffsetCommit],
) -> list[list[int]]:
    """Several appends (and offset commits) in ONE transaction: a group commit.

    With ``fence=(writer_id, epoch)`` nothing is written unless ``epoch`` is the writer's
    current one.  Returns the offsets of each append's records.
    """
    conn.execute("BEGIN IMMEDIATE")
    if fence is not None:
        _check_fence(conn, *fence)
    ts = now_ms()
    out = [_insert(conn, meta, parts, recs, ts) for meta, parts, recs in groups]
    latest: dict[tuple[str, str, int], int] = {}
    for c in commits:
        key = (c.group, c.topic, c.partition)
        latest[key] = max(latest.get(key, -1), c.next_offset)
    for (group, topic, partition), next_offset in latest.items():
        _upsert_offsets(conn, group, topic, {partition: next_offset})
    conn.execute("COMMIT")
    return out


def _insert(
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
