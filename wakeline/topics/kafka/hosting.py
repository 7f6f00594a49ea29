"""Version-aware assignment on Kafka (see :mod:`wakeline.topics.hosting`).

Each member offers two assignors: ``wakeline-versions``, whose member metadata carries the
member's :class:`~wakeline.topics.hosting.Hosting` as ``user_data``, and aiokafka's
round-robin (the group picks a protocol every member offers, so a member of an older
wakeline keeps the group on round-robin).  The leader of a rebalance decodes every member's
announcement: members that all host the same pairs get the round-robin assignment as before;
otherwise :func:`~wakeline.topics.hosting.assignment` decides, the partitions a member's open
runs need counting as that member's (eager rebalances keep no other record of owners).  An
assignment made from versions says so in its ``user_data``; a member of such a group asks for
a rebalance when what it announces changes (an old version's last run ended there), at most
once per :data:`REJOIN_EVERY_S`.  :func:`hosted` reads the announcements of a group's members
from ``DescribeGroups``, for orphaned runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

from wakeline.topics.hosting import Hosting, HostingSource, Pair, assignment

NAME = "wakeline-versions"
VERSIONED = b"wakeline-versions"
REJOIN_EVERY_S = 1.0


class Announcer:
    """One consumer's side: what it last announced, and whether its group follows versions."""

    def __init__(self, source: HostingSource) -> None:
        self.source = source
        self.sent = ""
        self.versioned = False
        self._asked = 0.0

    def metadata(self) -> bytes:
        self.sent = self.source.hosting().to_json()
        return self.sent.encode()

    def wants_rejoin(self) -> bool:
        """The group follows versions and this member's announcement changed since its join."""
        if not self.versioned or time.monotonic() - self._asked < REJOIN_EVERY_S:
            return False
        if self.source.hosting().to_json() == self.sent:
            return False
        self._asked = time.monotonic()
        return True

    def assignors(self) -> tuple[type[AbstractPartitionAssignor], ...]:
        announcer = self

        class VersionAssignor(AbstractPartitionAssignor):  # type: ignore[misc]  # untyped
            name = NAME
            version = 0

            @classmethod
            def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
                return ConsumerProtocolMemberMetadata(0, sorted(topics), announcer.metadata())

            @classmethod
            def assign(cls, cluster: Any, members: Mapping[str, Any]) -> dict[str, Any]:
                return version_assignment(cluster, members)

            @classmethod
            def on_assignment(cls, assignment: Any) -> None:
                announcer.versioned = assignment.user_data == VERSIONED

        return (VersionAssignor, RoundRobinPartitionAssignor)


def version_assignment(cluster: Any, members: Mapping[str, Any]) -> dict[str, Any]:
    """The leader's assignment of ``members`` (member id -> decoded member metadata)."""
    hosting = {m: h for m, meta in members.items() if (h := decode(meta.user_data)) is not None}
    topics = sorted({t for meta in members.values() for t in meta.subscription})
    kinds = {hosting[m].hosts if m in hosting else None for m in members}
    if len(topics) != 1 or len(kinds) <= 1:
        plain: dict[str, Any] = RoundRobinPartitionAssignor.assign(cluster, members)
        return plain
    topic = topics[0]
    count = len(cluster.partitions_for_topic(topic) or ())
    owners = {p: m for m, h in sorted(hosting.items()) for p, need in h.needs.items() if need}
    plan = assignment(list(members), hosting, owners, count)
    mine: dict[str, list[int]] = {m: [] for m in members}
    for partition, member in plan.items():
        mine[member].append(partition)
    return {
        m: ConsumerProtocolMemberAssignment(0, [(topic, sorted(ps))], VERSIONED)
        for m, ps in mine.items()
    }


def decode(user_data: bytes | None) -> Hosting | None:
    try:
        return Hosting.from_json(user_data.decode()) if user_data else None
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def hosted(described: Iterable[Any], group: str) -> frozenset[Pair] | None:
    """The pairs the members of ``group`` announce, from ``DescribeGroups`` responses;
    ``None`` if none announces (or the group does not use :data:`NAME`)."""
    pairs: set[Pair] = set()
    announced = False
    for response in described:
        for found in response.groups:
            group_id, protocol, members = found[1], found[4], found[5]
            if group_id != group or protocol != NAME:
                continue
            for member in members:
                metadata = member[-2]  # (member_id, [instance_id,] client, host, meta, assign)
                hosting = decode(ConsumerProtocolMemberMetadata.decode(metadata).user_data)
                if hosting is not None:
                    announced = True
                    pairs |= hosting.hosts
    return frozenset(pairs) if announced else None
