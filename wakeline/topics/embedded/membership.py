"""The group-membership tables of the embedded log, as blocking operations of its write thread.

:mod:`wakeline.topics.embedded.groups` runs them through
:meth:`~wakeline.topics.embedded.store.SqliteStore.write`; each is one ``BEGIN IMMEDIATE``
transaction over ``group_members`` and ``group_owners``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence

from wakeline.topics.embedded.appends import now_ms
from wakeline.topics.hosting import range_assignment

Assign = Callable[[Sequence[str], Mapping[int, str]], Mapping[int, str]]
"""``(live members, current owners) -> owner of each partition`` (see :mod:`..hosting`)."""


def sql_group_sync(
    conn: sqlite3.Connection,
    group: str,
    topic: str,
    member_id: str,
    session_ms: int,
    partitions: int,
    dead: Callable[[str], bool] = lambda member: False,
    assign: Assign | None = None,
) -> tuple[frozenset[int], frozenset[int]]:
    """Heartbeat, expire dead members (``dead(member_id)``: its process is gone, see
    :mod:`~wakeline.topics.embedded.liveness`; or its session timed out), claim free target
    partitions.

    ``assign``: the target assignment from the live members and owners (else range).
    Returns ``(target, owned)``: the partitions the assignment gives this member and the ones
    it owns in the table now (a target partition still owned by another live member is
    claimed only after that member released it, i.e. after its ``on_revoked``).
    """
    conn.execute("BEGIN IMMEDIATE")
    _heartbeat(conn, group, topic, member_id, session_ms)
    others = conn.execute(
        "SELECT member_id FROM group_members WHERE grp = ? AND topic = ? AND member_id != ?",
        (group, topic, member_id),
    ).fetchall()
    conn.executemany(
        "DELETE FROM group_members WHERE grp = ? AND topic = ? AND member_id = ?",
        [(group, topic, m) for (m,) in others if dead(m)],
    )
    conn.execute(
        "DELETE FROM group_members WHERE grp = ? AND topic = ?"
        " AND heartbeat_ms + session_timeout_ms < ?",
        (group, topic, now_ms()),
    )
    conn.execute(
        "DELETE FROM group_owners WHERE grp = ? AND topic = ? AND member_id NOT IN"
        " (SELECT member_id FROM group_members WHERE grp = ? AND topic = ?)",
        (group, topic, group, topic),
    )
    members = sorted(
        r[0]
        for r in conn.execute(
            "SELECT member_id FROM group_members WHERE grp = ? AND topic = ?", (group, topic)
        )
    )
    owners: dict[int, str] = dict(
        conn.execute(
            "SELECT partition, member_id FROM group_owners WHERE grp = ? AND topic = ?",
            (group, topic),
        )
    )
    target = _target(members, owners, partitions, member_id, assign)
    claims = sorted(p for p in target if p not in owners)
    conn.executemany(
        "INSERT INTO group_owners (grp, topic, partition, member_id) VALUES (?, ?, ?, ?)",
        [(group, topic, p, member_id) for p in claims],
    )
    conn.execute("COMMIT")
    owned = {p for p, m in owners.items() if m == member_id}.union(claims)
    return target, frozenset(owned)


def _target(
    members: Sequence[str],
    owners: Mapping[int, str],
    partitions: int,
    member_id: str,
    assign: Assign | None,
) -> frozenset[int]:
    if assign is None:
        return range_assignment(members, partitions, member_id)
    return frozenset(p for p, m in assign(members, owners).items() if m == member_id)


def sql_group_touch(
    conn: sqlite3.Connection, group: str, topic: str, member_id: str, session_ms: int
) -> None:
    conn.execute("BEGIN IMMEDIATE")
    _heartbeat(conn, group, topic, member_id, session_ms)
    conn.execute("COMMIT")


def sql_group_release(
    conn: sqlite3.Connection,
    group: str,
    topic: str,
    member_id: str,
    partitions: Iterable[int] | None,
) -> None:
    """Give up ``partitions`` (all, and leave the group, when ``None``)."""
    conn.execute("BEGIN IMMEDIATE")
    if partitions is None:
        conn.execute(
            "DELETE FROM group_owners WHERE grp = ? AND topic = ? AND member_id = ?",
            (group, topic, member_id),
        )
        conn.execute(
            "DELETE FROM group_members WHERE grp = ? AND topic = ? AND member_id = ?",
            (group, topic, member_id),
        )
    else:
        conn.executemany(
            "DELETE FROM group_owners"
            " WHERE grp = ? AND topic = ? AND partition = ? AND member_id = ?",
            [(group, topic, p, member_id) for p in partitions],
        )
    conn.execute("COMMIT")


def _heartbeat(
    conn: sqlite3.Connection, group: str, topic: str, member_id: str, session_ms: int
) -> None:
    conn.execute(
        "INSERT INTO group_members (grp, topic, member_id, heartbeat_ms, session_timeout_ms)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (grp, topic, member_id) DO UPDATE"
        " SET heartbeat_ms = excluded.heartbeat_ms,"
        " session_timeout_ms = excluded.session_timeout_ms",
        (group, topic, member_id, now_ms(), session_ms),
    )
