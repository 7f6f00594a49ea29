"""The Kafka backend of the log port, on aiokafka.

Open it with ``log = await KafkaLog.open("host:9092")`` and ``await log.close()`` it (or
``async with await KafkaLog.open(...) as log``).  Pieces:

* topics: ``create_topics`` through the admin client (missing topics only; an existing topic
  keeps its partition count), then waits until the metadata shows every new partition with
  a leader (:mod:`wakeline.topics.kafka.admin`).  Partition counts come from metadata and are
  cached (a missing topic raises :class:`UnknownTopicError`; auto topic creation is never
  relied on).
* unfenced :meth:`KafkaLog.append`: one idempotent producer (``acks=all``); the partition is
  chosen by wakeline's murmur2 :func:`partition_for` (key ``None`` -> partition 0), so it is
  the partition Java clients pick.  Records with the same key keep their order.  A multi-record
  append is not atomic (a failure may land a prefix); it is never duplicated.  A record larger
  than ``max_record_bytes`` (key + value + headers), or whose record batch would exceed
  ``max_message_bytes`` (the broker's ``message.max.bytes``, default 1 MiB + 12), raises
  :class:`RecordTooLargeError` before anything is sent.
* :meth:`KafkaLog.read`: pooled non-group ``read_committed`` consumers, paused while idle
  (:mod:`wakeline.topics.kafka.reader`).  Aborted records of fenced zombies and transaction
  markers are never returned: offsets have gaps.
* :meth:`KafkaLog.end_offset` is the last stable offset (``read_committed`` ListOffsets):
  the offset after the last record a reader can see now.  With transactions it is not the
  offset the next record will get (commit markers take offsets).
* groups: :mod:`wakeline.topics.kafka.groups`; fenced writers (transactions, group commit,
  what a zombie can do): :mod:`wakeline.topics.kafka.writer`; error mapping:
  :mod:`wakeline.topics.kafka.errors`; argument checks shared with the embedded log:
  :mod:`wakeline.topics.contract`.

Every aiokafka error is mapped by :func:`~wakeline.topics.kafka.errors.map_error`: connection
problems and timeouts become :class:`LogUnavailableError`.  While the broker is unreachable
aiokafka retries produce requests forever: an append gives up after ``retry_deadline_s`` with
:class:`LogUnavailableError`, and may still land later (like any lost produce response).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.record.default_records import DefaultRecordBatchBuilder as _Batch
from aiokafka.structs import TopicPartition

from wakeline.topics import contract
from wakeline.topics.hosting import HostingSource
from wakeline.topics.kafka.admin import TopicAdmin
from wakeline.topics.kafka.errors import call_retrying, map_error, producer_failed
from wakeline.topics.kafka.groups import GroupOffsets, KafkaConsumer
from wakeline.topics.kafka.hosting import hosted as kafka_hosted
from wakeline.topics.kafka.reader import ReaderPool
from wakeline.topics.kafka.visibility import Visibility
from wakeline.topics.kafka.writer import KafkaWriter, shorten_concurrent_transactions_backoff
from wakeline.topics.port import (
    AssignmentListener,
    OutRecord,
    Record,
    TopicSpec,
)

__all__ = ["KafkaConsumer", "KafkaLog", "KafkaWriter"]

DEFAULT_MAX_RECORD_BYTES = 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024 + 12  # the broker's message.max.bytes default


class KafkaLog:
    """A :class:`~wakeline.topics.port.Log` on an Apache Kafka cluster.

    Create it with :meth:`open`; the constructor does no I/O.  One object belongs to the event
    loop that uses it first.
    """

    system = "kafka"
    key_file = None
    """Kafka keeps no record key: the fleet's comes from ``$WAKELINE_RECORD_KEY_FILE``."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "wakeline",
        request_timeout_s: float = 30.0,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        retry_deadline_s: float = 60.0,
        max_idle_readers: int = 32,
    ) -> None:
        contract.check_max_record_bytes(max_record_bytes)
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.request_timeout_s = request_timeout_s
        self.request_timeout_ms = max(1000, round(request_timeout_s * 1000))
        self.max_record_bytes = max_record_bytes
        self.max_message_bytes = max_message_bytes  # the topics' max.message.bytes
        self.retry_deadline_s = retry_deadline_s
        self._topics = TopicAdmin(request_timeout_s)
        self._client: Any = None  # raw requests: group offsets
        self.offsets: GroupOffsets = GroupOffsets(None, request_timeout_s)
        self._meta: Any = None  # end offsets (read_committed ListOffsets)
        self._producer: Any = None
        self._readers = ReaderPool(
            lambda: self.new_consumer(
                auto_offset_reset="none",
                fetch_max_wait_ms=100,
                max_partition_fetch_bytes=256 * 1024,  # a larger first batch still comes whole
            ),
            max_idle=max_idle_readers,
        )
        self._consumers: set[KafkaConsumer] = set()
        self._writers: set[KafkaWriter] = set()
        self._closed = False
        self.visibility = Visibility(
            lambda tps: self._meta.end_offsets(tps), lambda g, tps: self.offsets.fetch(g, tps)
        )
        """Transactions this process committed that readers may not see yet: every read
        here waits for them first (read-your-writes; :mod:`.visibility`)."""

    @classmethod
    async def open(
        cls, bootstrap: str, *, client_id: str = "wakeline", request_timeout_s: float = 30.0
    ) -> KafkaLog:
        """Connect to the cluster at ``bootstrap`` (``host:port[,host:port...]``)."""
        log = cls(bootstrap, client_id=client_id, request_timeout_s=request_timeout_s)
        try:
            await log.start()
        except BaseException:
            await log.close()
            raise
        return log

    async def start(self) -> None:
        common: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
        }
        try:
            self._topics.client = AIOKafkaAdminClient(**common)
            await self._topics.client.start()
            self._client = AIOKafkaClient(**common, retry_backoff_ms=20)
            await self._client.bootstrap()
            self.offsets = GroupOffsets(self._client, self.request_timeout_s)
            self._meta = self.new_consumer()
            await self._meta.start()
            self._producer = self._new_producer()
            await self._producer.start()
        except Exception as exc:
            raise map_error(exc, f"connecting to Kafka at {self.bootstrap}") from exc

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- topics -----------------------------------------------------------------------------

    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        contract.check_topic_specs(specs)
        await self._topics.create(specs)

    async def partition_count(self, topic: str) -> int:
        return await self._topics.partition_count(topic)

    async def check_partition(self, topic: str, partition: int) -> None:
        """:class:`UnknownTopicError` unless ``topic`` has ``partition``."""
        await self._topics.check_partition(topic, partition)

    def check_sizes(self, topic: str, records: Sequence[OutRecord]) -> int:
        """Raise :class:`RecordTooLargeError` for an oversized record; return total bytes.

        Checked before anything is sent: a record the broker rejects would break the
        idempotent producer's sequence numbers (aiokafka cannot recover from that).
        """
        limit = contract.BatchLimit(self.max_message_bytes, _batch_size)
        return contract.check_record_sizes(topic, records, self.max_record_bytes, limit)

    # -- records ----------------------------------------------------------------------------

    async def append(self, topic: str, records: Sequence[OutRecord]) -> list[tuple[int, int]]:
        n = await self.partition_count(topic)
        self.check_sizes(topic, records)
        if not records:
            return []
        partitions = contract.key_partitions(records, n)
        what = f"append to {topic!r}"
        try:
            sent = [
                await self._producer.send(
                    topic, r.value, key=r.key, partition=p, headers=list(r.headers) or None
                )
                for r, p in zip(records, partitions, strict=True)
            ]
            done = await asyncio.wait_for(asyncio.gather(*sent), self.retry_deadline_s)
        except Exception as exc:
            if producer_failed(self._producer):  # fatal (sequence numbers): a fresh producer
                await self._replace_producer()
            raise map_error(exc, what) from exc
        return [(p, m.offset) for p, m in zip(partitions, done, strict=True)]

    async def _replace_producer(self) -> None:
        old, self._producer = self._producer, self._new_producer()
        with contextlib.suppress(Exception):
            await old.stop()
        await self._producer.start()

    def _new_producer(self) -> Any:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            request_timeout_ms=self.request_timeout_ms,
            acks="all",
            enable_idempotence=True,
            **self._producer_limits(),
        )

    async def read(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = 1000,
        timeout_s: float = 0.0,
    ) -> list[Record]:
        contract.check_open(self._closed, "Kafka log")
        await self.check_partition(topic, partition)
        contract.check_read_args(offset, max_records)
        tp = TopicPartition(topic, partition)
        await self.visibility.settle((tp,))
        return await self._readers.read(tp, offset, max_records, timeout_s, self.request_timeout_s)

    @property
    def readers_opened(self) -> int:
        """How many read consumers this log opened so far (observability and tests)."""
        return self._readers.opened

    async def end_offset(self, topic: str, partition: int) -> int:
        await self.check_partition(topic, partition)
        tp = TopicPartition(topic, partition)
        await self.visibility.settle((tp,))
        offsets = await call_retrying(
            self.request_timeout_s, lambda: self._meta.end_offsets([tp]), "end_offset"
        )
        return int(offsets[tp])

    async def committed(self, group: str, topic: str, partition: int) -> int | None:
        tp = TopicPartition(topic, partition)
        await self.visibility.settle((tp,), group)
        found = await self.offsets.fetch(group, [tp])
        return found.get(tp)

    # -- groups and writers -----------------------------------------------------------------

    def consumer(
        self,
        group: str,
        topic: str,
        listener: AssignmentListener,
        *,
        session_timeout_s: float = 10.0,
        instance_id: str | None = None,
        max_poll_records: int = 500,
        hosting: HostingSource | None = None,
    ) -> KafkaConsumer:
        """A new member of ``group`` over ``topic``; it joins at its first :meth:`poll`.
        With ``hosting`` it announces versions (:mod:`wakeline.topics.kafka.hosting`)."""
        contract.check_open(self._closed, "Kafka log")
        consumer = KafkaConsumer(
            self,
            group,
            topic,
            listener,
            session_timeout_s=session_timeout_s,
            instance_id=instance_id,
            max_poll_records=max_poll_records,
            hosting=hosting,
        )
        self._consumers.add(consumer)
        return consumer

    async def hosted(self, group: str, topic: str) -> frozenset[tuple[str, str]] | None:
        """What the members of ``group`` announce (``DescribeGroups``; ``topic`` is implied:
        a group of the workers consumes one topic)."""
        contract.check_open(self._closed, "Kafka log")
        try:
            described = await self._topics.client.describe_consumer_groups([group])
        except Exception as exc:
            raise map_error(exc, f"describing group {group!r}") from exc
        return kafka_hosted(described, group)

    async def writer(self, writer_id: str, partition: int) -> KafkaWriter:
        """Open the transactional producer ``writer_id`` (InitProducerId fences older ones)."""
        contract.check_writer_partition(partition)
        contract.check_open(self._closed, "Kafka log")
        shorten_concurrent_transactions_backoff()
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-writer",
            request_timeout_ms=self.request_timeout_ms,
            transactional_id=writer_id,
            acks="all",
            enable_idempotence=True,
            retry_backoff_ms=20,
            **self._producer_limits(),
        )
        try:
            await asyncio.wait_for(producer.start(), self.retry_deadline_s)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            if isinstance(exc, Exception):
                raise map_error(exc, f"opening writer {writer_id!r}") from exc
            raise
        writer = KafkaWriter(
            self, writer_id, partition, producer, retry_deadline_s=self.retry_deadline_s
        )
        self._writers.add(writer)
        return writer

    def new_consumer(self, **config: Any) -> Any:
        """An ``AIOKafkaConsumer`` of this cluster (``read_committed``, no auto commit)."""
        settings: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
            "isolation_level": "read_committed",
            "enable_auto_commit": False,
            "retry_backoff_ms": 20,
        }
        settings.update(config)
        return AIOKafkaConsumer(**settings)

    def _producer_limits(self) -> dict[str, Any]:
        # batches stay well below the broker's message.max.bytes (default 1 MiB + 12), which
        # limits a whole record batch; a single larger record still gets a batch of its own
        return {
            "max_request_size": self.max_message_bytes,
            "max_batch_size": 256 * 1024,
            "linger_ms": 0,
        }

    def forget_consumer(self, consumer: KafkaConsumer) -> None:
        self._consumers.discard(consumer)

    def forget_writer(self, writer: KafkaWriter) -> None:
        self._writers.discard(writer)

    async def close(self) -> None:
        """Close consumers (they leave their groups), writers, readers and clients.

        A listener error raised while closing a consumer is re-raised after everything closed.
        """
        if self._closed:
            return
        self._closed = True
        await contract.close_then_raise(self._consumers, self._close_writers_and_clients)

    async def _close_writers_and_clients(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                await writer.close()
        await self._readers.close()
        clients = [c for c in (self._meta, self._producer, self._topics.client) if c is not None]
        for client in clients:
            with contextlib.suppress(Exception):
                await client.stop() if hasattr(client, "stop") else await client.close()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()


def _batch_size(record: OutRecord) -> int:
    """The bytes of the record batch that holds only ``record`` (what the broker limits)."""
    return int(_Batch.estimate_size_in_bytes(record.key, record.value, list(record.headers)))
