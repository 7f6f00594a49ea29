"""Announcements of the embedded log's group members: a JSON file per member next to its
liveness lock (``<data_dir>/members/<hash>.hosting.json``), written by the member at each
membership round when it changed, read by every member's sync (for the assignment, see
:mod:`wakeline.topics.hosting`) and by :meth:`EmbeddedLog.hosted` (for orphaned runs).

Blocking functions: the sync reads the files on the log's write thread, inside its
transaction, so the members it sees and what they announce belong together.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from wakeline.fsutil import private_dir
from wakeline.topics.embedded.appends import now_ms
from wakeline.topics.embedded.liveness import is_dead, lock_path
from wakeline.topics.embedded.membership import Assign
from wakeline.topics.hosting import Hosting, Pair, assignment


def hosting_path(data_dir: Path, group: str, topic: str, member_id: str) -> Path:
    return lock_path(data_dir, group, topic, member_id).with_suffix(".hosting.json")


def write_hosting(path: Path, hosting: Hosting) -> None:
    """Replace the announcement atomically (a reader sees the old or the new one)."""
    private_dir(path.parent)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(hosting.to_json(), encoding="utf-8")
    os.replace(tmp, path)


def read_hosting(path: Path) -> Hosting | None:
    """A member's announcement; ``None`` if it made none (or it is unreadable)."""
    try:
        return Hosting.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def assigner(data_dir: Path, group: str, topic: str, partitions: int) -> Assign:
    """The assignment of ``group`` over ``topic`` from its members' announcements."""

    def assign(members: Sequence[str], owners: Mapping[int, str]) -> Mapping[int, str]:
        hosting = _announced(data_dir, group, topic, members)
        return assignment(members, hosting, owners, partitions)

    return assign


def sql_hosted(
    conn: sqlite3.Connection, data_dir: Path, group: str, topic: str
) -> frozenset[Pair] | None:
    """The pairs the live members of ``group`` host; ``None`` if no live member announces."""
    rows = conn.execute(
        "SELECT member_id FROM group_members WHERE grp = ? AND topic = ?"
        " AND heartbeat_ms + session_timeout_ms >= ?",
        (group, topic, now_ms()),
    ).fetchall()
    live = [m for (m,) in rows if not is_dead(lock_path(data_dir, group, topic, m))]
    announced = _announced(data_dir, group, topic, live)
    if not announced:
        return None
    return frozenset(pair for h in announced.values() for pair in h.hosts)


def _announced(
    data_dir: Path, group: str, topic: str, members: Sequence[str]
) -> dict[str, Hosting]:
    found = {m: read_hosting(hosting_path(data_dir, group, topic, m)) for m in members}
    return {m: h for m, h in found.items() if h is not None}
