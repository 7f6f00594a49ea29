"""The SQLite schema of the embedded log, its creation (migration) and the topic tables.

Layout: a record's rowid is ``(partitions.id << 40) | offset``, so one partition is one
contiguous rowid range of the ``records`` table (reads are range scans of its clustered
b-tree, no secondary index).  That allows 2**40 offsets per partition and 2**23 partitions in
one log.  ``partitions.next_offset`` is the high watermark; it is read and bumped inside the
``BEGIN IMMEDIATE`` transaction that inserts the records (:mod:`.appends`), so offsets stay
dense and unique whatever the number of writing processes.

The functions here are blocking: they run on the write or read thread of a
:class:`~wakeline.topics.embedded.store.SqliteStore`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wakeline.topics.port import LogError, TopicSpec, UnknownTopicError

OFFSET_BITS = 40
MAX_PARTITION_ROWS = 1 << (63 - OFFSET_BITS)
SCHEMA_VERSION = 1

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


def init_schema(conn: sqlite3.Connection, file: Path) -> None:
    """Create the tables of a new database; refuse one of a newer schema version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise LogError(f"{file} has schema version {version}; this wakeline knows 1")
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    conn.execute("COMMIT")


def load_meta(conn: sqlite3.Connection, topic: str) -> TopicMeta:
    row = conn.execute("SELECT partitions FROM topics WHERE name = ?", (topic,)).fetchone()
    if row is None:
        raise UnknownTopicError(f"unknown topic {topic!r} (create it first)")
    ids = tuple(
        r[0]
        for r in conn.execute(
            "SELECT id FROM partitions WHERE topic = ? ORDER BY partition", (topic,)
        )
    )
    return TopicMeta(topic, int(row[0]), ids)


def create_topics(conn: sqlite3.Connection, specs: Sequence[TopicSpec], file: Path) -> None:
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
                raise LogError(f"{file}: too many partitions in one embedded log")
    conn.execute("COMMIT")
