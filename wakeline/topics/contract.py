"""The checks of the log port's contract that every backend makes the same way.

Both :mod:`wakeline.topics.embedded` and :mod:`wakeline.topics.kafka` validate their
arguments here, so a call rejected by one backend is rejected by the other with the same
error type and message:

* :func:`check_open` -- a closed log, writer or consumer raises :class:`LogError`;
* :func:`check_topic_specs` -- a topic needs a name and a positive partition count;
* :func:`check_read_args` -- a read's offset and ``max_records``;
* :func:`check_writer_partition`, :func:`check_offsets`, :func:`check_consumer_args`,
  :func:`check_seek` -- writers, offset commits and consumer-group members;
* :func:`check_max_record_bytes`, :func:`record_size`, :func:`check_record_sizes` -- what a
  record weighs (key + value + header names and values) and the limit it must stay below;
* :func:`key_partitions` -- the partition of each record: murmur2 of its key like Kafka's
  default partitioner, partition 0 for a record without a key;
* :func:`close_then_raise` -- closing a log: close every member, then the rest, and re-raise
  the first error a member raised only after everything is closed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import LogError, OutRecord, RecordTooLargeError, TopicSpec


def check_open(closed: bool, what: str) -> None:
    """A closed log, writer or consumer refuses calls with :class:`LogError`."""
    if closed:
        raise LogError(f"{what} is closed")


def check_topic_specs(specs: Iterable[TopicSpec]) -> None:
    """``ValueError`` for a spec without a name or without a positive partition count."""
    for spec in specs:
        if not spec.name:
            raise ValueError("a topic name must not be empty")
        if spec.partitions <= 0:
            raise ValueError(f"topic {spec.name!r}: partitions must be positive")


def check_read_args(offset: int, max_records: int) -> None:
    if offset < 0:
        raise ValueError(f"offset must not be negative, not {offset}")
    if max_records <= 0:
        raise ValueError("max_records must be positive")


def check_writer_partition(partition: int) -> None:
    if partition < 0:
        raise ValueError("partition must not be negative")


def check_offsets(offsets: Iterable[int]) -> None:
    """Offsets to commit (next offsets to read) are never negative."""
    if any(o < 0 for o in offsets):
        raise ValueError("offsets must not be negative")


def check_consumer_args(session_timeout_s: float, max_poll_records: int) -> None:
    if session_timeout_s <= 0:
        raise ValueError("session_timeout_s must be positive")
    if max_poll_records <= 0:
        raise ValueError("max_poll_records must be positive")


def check_seek(partition: int, offset: int, assigned: Collection[int], member_id: str) -> None:
    """A member seeks only partitions it holds, to an offset that is not negative."""
    if partition not in assigned:
        raise ValueError(f"partition {partition} is not assigned to {member_id}")
    if offset < 0:
        raise ValueError("offset must not be negative")


def check_max_record_bytes(max_record_bytes: int) -> None:
    if max_record_bytes <= 0:
        raise ValueError("max_record_bytes must be positive")


def record_size(record: OutRecord) -> int:
    """Bytes a record counts against ``max_record_bytes``: key + value + header names/values."""
    size = len(record.value) + (len(record.key) if record.key is not None else 0)
    return size + sum(len(name.encode("utf-8")) + len(value) for name, value in record.headers)


@dataclass(frozen=True, slots=True)
class BatchLimit:
    """A second limit: the size of the record batch a record needs (Kafka's
    ``message.max.bytes`` limits a whole batch, whatever the record's own size)."""

    max_bytes: int
    size: Callable[[OutRecord], int]
    name: str = "max_message_bytes"


def check_record_sizes(
    topic: str,
    records: Sequence[OutRecord],
    max_record_bytes: int,
    batch: BatchLimit | None = None,
) -> int:
    """Raise :class:`RecordTooLargeError` for an oversized record; return the total bytes."""
    total = 0
    for record in records:
        size = record_size(record)
        batch_size = batch.size(record) if batch is not None else 0
        if size > max_record_bytes or (batch is not None and batch_size > batch.max_bytes):
            raise RecordTooLargeError(_too_large(topic, size, max_record_bytes, batch, batch_size))
        total += size
    return total


def _too_large(
    topic: str, size: int, max_record_bytes: int, batch: BatchLimit | None, batch_size: int
) -> str:
    as_batch = f"; {batch_size} as a record batch" if batch is not None else ""
    limits = f"max_record_bytes={max_record_bytes}"
    if batch is not None:
        limits += f" or {batch.name}={batch.max_bytes}"
    return (
        f"record of {size} bytes (key + value + headers{as_batch}) for topic {topic!r} is"
        f" larger than {limits}"
    )


def key_partitions(records: Iterable[OutRecord], partitions: int) -> list[int]:
    """Each record's partition: murmur2 of its key (Kafka's default), 0 without a key."""
    return [0 if r.key is None else partition_for(r.key, partitions) for r in records]


class Closable(Protocol):
    async def close(self) -> None: ...


async def close_then_raise(
    members: Iterable[Closable], rest: Callable[[], Awaitable[None]]
) -> None:
    """Close every member (a failing one does not stop the others), then ``rest()``; then
    re-raise the first exception a member raised (a listener error, say), if any."""
    error: Exception | None = None
    for member in list(members):
        try:
            await member.close()
        except Exception as exc:
            error = error or exc
    await rest()
    if error is not None:
        raise error
