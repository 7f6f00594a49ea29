"""The log port: what wakeline needs from a Kafka-style log.

Two backends implement it: :mod:`wakeline.topics.embedded.log` (one machine, no services) and
:mod:`wakeline.topics.kafka.log` (Apache Kafka through aiokafka).  Everything above this module
(workers, projections, the client) is written against these protocols only.

Model (the same as Kafka's):

* a *topic* has a fixed number of *partitions*; a record's partition is chosen from its key
  with Kafka's murmur2 partitioner (:func:`wakeline.topics.partitioner.partition_for`), so a
  run id lands on the same partition index on every backend;
* every partition is an append-only sequence of records numbered by increasing *offsets* from
  0 (dense on the embedded log; on Kafka, transaction markers and aborted records take offsets
  that readers never see, so code must not assume ``next = previous + 1``);
* a *consumer group* spreads the partitions of the topics it subscribes to over its live
  members and stores the next offset to read per partition;
* a :class:`PartitionWriter` is the *fenced* writer of one partition: opening a writer for a
  partition fences every earlier writer of the same ``writer_id`` (Kafka: a transactional id),
  and an append from a fenced writer raises :class:`FencedError` instead of landing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

from wakeline.topics.hosting import HostingSource

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Record:
    """A record read back from the log, stamped with where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers = ()
    timestamp_ms: int = 0

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to append."""

    key: bytes | None
    value: bytes
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OffsetCommit:
    """Offsets to commit for a consumer group together with an append (Kafka: in one txn)."""

    group: str
    topic: str
    partition: int
    next_offset: int


class LogError(Exception):
    """Base class of log errors.  ``retriable`` says whether the same call may succeed later."""

    retriable: ClassVar[bool] = False


class FencedError(LogError):
    """A newer writer owns this partition: this writer is a zombie and must stop."""


class UnknownTopicError(LogError):
    """The topic does not exist (create it with ``wakeline topics create``)."""


class RecordTooLargeError(LogError):
    """The record is larger than the log accepts."""


class LogUnavailableError(LogError):
    """The log cannot be reached right now (broker down, database locked too long)."""

    retriable = True


class AssignmentListener(Protocol):
    """Called by a :class:`GroupConsumer` when its partitions change, incrementally: a
    partition the member keeps across a rebalance is neither revoked nor assigned again.

    The embedded log hands a partition to another member only after ``on_revoked`` returned;
    on Kafka (eager rebalances) the old member learns of the revocation when it gets its new
    assignment, about when the new member gets it: the new member's fenced writer is what stops
    the old one.  An exception raised here propagates to the caller of
    :meth:`GroupConsumer.poll` (it is never swallowed).
    """

    async def on_assigned(self, partitions: frozenset[int]) -> None: ...

    async def on_revoked(self, partitions: frozenset[int]) -> None: ...


class GroupConsumer(Protocol):
    """A member of a consumer group over one topic."""

    @property
    def member_id(self) -> str: ...

    def assignment(self) -> frozenset[int]: ...

    async def poll(self, timeout_s: float) -> list[Record]:
        """Records of the assigned partitions after the consumer's position, oldest first.

        Membership (heartbeats, rebalances, listener calls) is driven from here and from a
        background heartbeat, so a member that stops polling still keeps its partitions until
        its session times out.
        """
        ...

    def seek(self, partition: int, offset: int) -> None: ...

    async def commit(self, offsets: Mapping[int, int]) -> None:
        """Commit ``partition -> next offset`` for this group (unfenced; see PartitionWriter)."""
        ...

    async def close(self) -> None:
        """Leave the group at once (partitions are revoked first)."""
        ...


class PartitionWriter(Protocol):
    """The fenced, exclusive writer of one partition index across topics."""

    @property
    def partition(self) -> int: ...

    async def append(
        self,
        topic: str,
        records: Sequence[OutRecord],
        *,
        commit: OffsetCommit | None = None,
    ) -> list[int]:
        """Append ``records`` to ``topic``/``self.partition`` atomically and in order.

        Returns their offsets.  When ``commit`` is given, the group offset is stored in the
        same atomic unit (Kafka: the same transaction).  Raises :class:`FencedError` if a newer
        writer with the same id exists.
        """
        ...

    async def close(self) -> None: ...


class LogReader(Protocol):
    """What following a run reads: records from an offset, a partition's end, partitions.
    A :class:`Log` is one; so is a shared subscription (``wakeline.following``)."""

    async def partition_count(self, topic: str) -> int: ...

    async def read(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = 1000,
        timeout_s: float = 0.0,
    ) -> list[Record]:
        """Records at ``offset`` and after; waits up to ``timeout_s`` when there are none yet."""
        ...

    async def end_offset(self, topic: str, partition: int) -> int:
        """The end of what readers can see: one past the last visible record's offset (Kafka:
        the last stable offset under ``read_committed``)."""
        ...


class Log(LogReader, Protocol):
    """A Kafka-style log (and so a :class:`LogReader`)."""

    @property
    def system(self) -> str:
        """What the log is, as OpenTelemetry's ``messaging.system`` (``kafka``, ...)."""
        ...

    @property
    def key_file(self) -> Path | None:
        """Where the log keeps the key its workers sign events with, when it keeps one (the
        embedded log does; for Kafka the fleet's key comes from the environment: see
        :mod:`wakeline.topics.signing`)."""
        ...

    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create missing topics; existing ones are left as they are."""
        ...

    async def append(self, topic: str, records: Sequence[OutRecord]) -> list[tuple[int, int]]:
        """Unfenced append; each record goes to the partition of its key.

        Returns ``(partition, offset)`` per record.  Records with the same key keep their order.
        """
        ...

    async def committed(self, group: str, topic: str, partition: int) -> int | None: ...

    def consumer(
        self,
        group: str,
        topic: str,
        listener: AssignmentListener,
        *,
        session_timeout_s: float = 10.0,
        instance_id: str | None = None,
        hosting: HostingSource | None = None,
    ) -> GroupConsumer:
        """A new member of ``group``.  With ``instance_id`` the member is *static* (Kafka's
        ``group.instance.id``): a process that comes back with the same id within the session
        timeout takes its place and gets the same partitions back without a rebalance.  With
        ``hosting`` it announces the agent versions it hosts, and the group's assignment
        follows them (:mod:`wakeline.topics.hosting`)."""
        ...

    async def hosted(self, group: str, topic: str) -> frozenset[tuple[str, str]] | None:
        """The ``(agent, version)`` pairs the live members of ``group`` announce; ``None``
        when no live member announces."""
        ...

    async def writer(self, writer_id: str, partition: int) -> PartitionWriter:
        """Open the fenced writer ``writer_id`` for ``partition``, fencing older ones."""
        ...

    async def close(self) -> None: ...
