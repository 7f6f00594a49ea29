"""What the embedded log reads: records, end offsets and committed group offsets.

Every function here is blocking and runs on the read thread of a
:class:`~wakeline.topics.embedded.store.SqliteStore` (a ``query_only`` connection).  A
partition's records are one range scan of the ``records`` table (see
:mod:`wakeline.topics.embedded.schema`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from wakeline.topics.embedded.appends import HEADER
from wakeline.topics.embedded.schema import OFFSET_BITS, TopicMeta
from wakeline.topics.port import Headers, Record


def decode_headers(blob: bytes | None) -> Headers:
    """The headers :func:`~wakeline.topics.embedded.appends.encode_headers` encoded."""
    if not blob:
        return ()
    out: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(blob):
        name_len, value_len = HEADER.unpack_from(blob, pos)
        pos += HEADER.size
        name = blob[pos : pos + name_len].decode("utf-8")
        pos += name_len
        out.append((name, blob[pos : pos + value_len]))
        pos += value_len
    return tuple(out)


def read_records(
    conn: sqlite3.Connection, meta: TopicMeta, partition: int, offset: int, limit: int
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
    conn: sqlite3.Connection, meta: TopicMeta, wants: Sequence[tuple[int, int, int]]
) -> list[Record]:
    """Records for each ``(partition, offset, limit)`` that has any, in the given order."""
    ends = dict(
        conn.execute("SELECT partition, next_offset FROM partitions WHERE topic = ?", (meta.name,))
    )
    out: list[Record] = []
    for partition, offset, limit in wants:
        if ends.get(partition, 0) > offset:
            out += read_records(conn, meta, partition, offset, limit)
    return out


def end_offset(conn: sqlite3.Connection, meta: TopicMeta, partition: int) -> int:
    row = conn.execute(
        "SELECT next_offset FROM partitions WHERE id = ?", (meta.ids[partition],)
    ).fetchone()
    return int(row[0])


def committed(
    conn: sqlite3.Connection, group: str, topic: str, partitions: Iterable[int]
) -> dict[int, int]:
    wanted = set(partitions)
    rows = conn.execute(
        "SELECT partition, next_offset FROM group_offsets WHERE grp = ? AND topic = ?",
        (group, topic),
    )
    return {int(p): int(o) for p, o in rows if p in wanted}
