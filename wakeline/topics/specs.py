"""The topics wakeline uses, and their specs."""

from __future__ import annotations

from dataclasses import dataclass

from wakeline.topics.port import TopicSpec

KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
KEEP_AN_HOUR = {"retention.ms": "3600000", "cleanup.policy": "delete"}


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names.  ``commands`` and ``events`` must have the same partition count: a run's
    commands and its journal live on the same partition index, owned by one worker."""

    commands: str = "wakeline.commands"
    events: str = "wakeline.events"
    notices: str = "wakeline.notices"
    deadletter: str = "wakeline.deadletter"
    ledger: str = "wakeline.ledger"
    deltas: str = "wakeline.deltas"
    """Live text of streamed model calls (key = run id): not journal, kept for an hour."""
    chunks: str = "wakeline.chunks"
    """Records too large for one record, in chunks (:mod:`wakeline.topics.chunked`)."""

    def specs(self, partitions: int, replication: int = 1) -> list[TopicSpec]:
        """Journals are kept forever (a run resumes from its whole journal)."""
        return [
            TopicSpec(self.commands, partitions, replication, {"retention.ms": "604800000"}),
            TopicSpec(self.events, partitions, replication, dict(KEEP_FOREVER)),
            TopicSpec(self.notices, partitions, replication, dict(KEEP_FOREVER)),
            TopicSpec(self.deadletter, 1, replication, dict(KEEP_FOREVER)),
            TopicSpec(self.ledger, partitions, replication, dict(KEEP_FOREVER)),
            TopicSpec(self.deltas, partitions, replication, dict(KEEP_AN_HOUR)),
            TopicSpec(self.chunks, partitions, replication, dict(KEEP_FOREVER)),
        ]


DEFAULT_TOPICS = Topics()


def prefixed_topics(prefix: str) -> Topics:
    """Topics named ``<prefix>.commands`` etc.: several deployments (or tests) on one cluster."""
    names = {name: f"{prefix}.{name}" for name in Topics.__dataclass_fields__}
    return Topics(**names)
