"""Records larger than a log takes: stored as chunks in a topic of their own, read back whole.

Kafka refuses a record over ``message.max.bytes`` (1 MiB by default), and so does the embedded
log over its ``max_record_bytes``.  A model request with a large document, a tool's big result
or a run's large input must still be journaled, so :class:`ChunkedLog` wraps a :class:`Log`
(either backend) and, for each record whose value is over ``inline_max`` bytes:

1. writes the value in chunks of at most ``inline_max`` bytes to the chunks topic, each keyed
   like the record and headed ``wakeline-chunk-of: <sha256 of the value>``; through a fenced
   writer they go to the writer's partition index, unfenced to the partition of the key;
2. *then* appends, in the record's place, a pointer with the same key and headers plus
   ``wakeline-chunks: <sha256>:<partition>:<first offset>:<count>`` and an empty value.

The chunks are durable before the pointer is appended, so a reader that sees the pointer can
read them.  A crash between the two leaves chunks that nothing points to, which no reader
ever sees.  Readers of a :class:`ChunkedLog` (reads and consumer-group polls) get the record
whole at the pointer's offset, with its own headers: a signature made over the value still
verifies.  Chunks whose bytes do not hash to the pointer's sha256 raise :class:`LogError`.
Records at or below ``inline_max`` bytes pass through as they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from wakeline.topics.hosting import HostingSource
from wakeline.topics.port import (
    AssignmentListener,
    GroupConsumer,
    Log,
    LogError,
    OffsetCommit,
    OutRecord,
    PartitionWriter,
    Record,
    TopicSpec,
)

POINTER = "wakeline-chunks"
CHUNK_OF = "wakeline-chunk-of"
DEFAULT_INLINE_MAX = 256 * 1024

StoreChunks = Callable[[list[OutRecord]], Awaitable[tuple[int, int]]]
"""Appends a record's chunks; the partition and offset of the first one."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Pointer:
    sha: str
    partition: int
    first: int
    count: int

    def header(self) -> tuple[str, bytes]:
        text = f"{self.sha}:{self.partition}:{self.first}:{self.count}"
        return POINTER, text.encode()

    @classmethod
    def of(cls, record: Record) -> _Pointer | None:
        raw = record.header(POINTER)
        if raw is None:
            return None
        sha, partition, first, count = raw.decode().split(":")
        return cls(sha, int(partition), int(first), int(count))


class ChunkedLog:
    """A :class:`Log` that stores records over ``inline_max`` bytes as chunks in ``chunks``."""

    def __init__(self, inner: Log, chunks: str, *, inline_max: int = DEFAULT_INLINE_MAX) -> None:
        if inline_max <= 0:
            raise ValueError("inline_max must be positive")
        self.inner, self.chunks, self.inline_max = inner, chunks, inline_max

    # -- what passes through ---------------------------------------------------------------
    @property
    def system(self) -> str:
        return self.inner.system

    @property
    def key_file(self) -> Path | None:
        return self.inner.key_file

    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        await self.inner.create_topics(specs)

    async def partition_count(self, topic: str) -> int:
        return await self.inner.partition_count(topic)

    async def end_offset(self, topic: str, partition: int) -> int:
        return await self.inner.end_offset(topic, partition)

    async def committed(self, group: str, topic: str, partition: int) -> int | None:
        return await self.inner.committed(group, topic, partition)

    async def close(self) -> None:
        await self.inner.close()

    # -- writes ------------------------------------------------------------------------------
    async def append(self, topic: str, records: Sequence[OutRecord]) -> list[tuple[int, int]]:
        """Unfenced: the chunks go to the partition of the record's key."""

        async def store(chunks: list[OutRecord]) -> tuple[int, int]:
            placed = [(await self.inner.append(self.chunks, [c]))[0] for c in chunks]
            return placed[0]  # the first chunk's (partition, offset)

        return await self.inner.append(topic, await self.pointers(records, store))

    async def writer(self, writer_id: str, partition: int) -> PartitionWriter:
        return ChunkedWriter(self, await self.inner.writer(writer_id, partition))

    async def pointers(self, records: Sequence[OutRecord], store: StoreChunks) -> list[OutRecord]:
        """``records`` with each oversized one stored (``await store(chunks)`` gives the
        partition and offset of the first chunk) and replaced by its pointer."""
        out = []
        for record in records:
            if len(record.value) <= self.inline_max:
                out.append(record)
                continue
            sha = hashlib.sha256(record.value).hexdigest()
            step = self.inline_max
            chunks = [
                OutRecord(record.key, record.value[i : i + step], ((CHUNK_OF, sha.encode()),))
                for i in range(0, len(record.value), step)
            ]
            partition, first = await store(chunks)
            pointer = _Pointer(sha, partition, first, len(chunks))
            out.append(OutRecord(record.key, b"", (*record.headers, pointer.header())))
        return out

    # -- reads -------------------------------------------------------------------------------
    async def read(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = 1000,
        timeout_s: float = 0.0,
    ) -> list[Record]:
        records = await self.inner.read(
            topic, partition, offset, max_records=max_records, timeout_s=timeout_s
        )
        return await self.whole(records)

    async def whole(self, records: list[Record]) -> list[Record]:
        """``records`` with each pointer replaced by the record it stands for."""
        if not any(r.header(POINTER) is not None for r in records):
            return records
        return [await self._joined(r) for r in records]

    async def _joined(self, record: Record) -> Record:
        pointer = _Pointer.of(record)
        if pointer is None:
            return record
        parts: list[bytes] = []
        offset, sha = pointer.first, pointer.sha.encode()
        while len(parts) < pointer.count:
            batch = await self.inner.read(self.chunks, pointer.partition, offset, max_records=64)
            if not batch:
                break
            parts += [c.value for c in batch if c.header(CHUNK_OF) == sha][: pointer.count]
            offset = batch[-1].offset + 1
        value = b"".join(parts)
        if len(parts) != pointer.count or hashlib.sha256(value).hexdigest() != pointer.sha:
            where = f"{record.topic}/{record.partition}@{record.offset}"
            raise LogError(f"the chunks of the record at {where} are missing or do not match")
        headers = tuple(h for h in record.headers if h[0] != POINTER)
        return dataclasses.replace(record, value=value, headers=headers)

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
        inner = self.inner.consumer(
            group,
            topic,
            listener,
            session_timeout_s=session_timeout_s,
            instance_id=instance_id,
            hosting=hosting,
        )
        return ChunkedConsumer(self, inner)

    async def hosted(self, group: str, topic: str) -> frozenset[tuple[str, str]] | None:
        return await self.inner.hosted(group, topic)


class ChunkedWriter:
    """A fenced writer whose oversized records go to the chunks topic first, on its own
    partition index (the writer of a partition index writes every topic's partition)."""

    def __init__(self, log: ChunkedLog, inner: PartitionWriter) -> None:
        self._log, self._inner = log, inner

    @property
    def partition(self) -> int:
        return self._inner.partition

    async def append(
        self, topic: str, records: Sequence[OutRecord], *, commit: OffsetCommit | None = None
    ) -> list[int]:
        async def store(chunks: list[OutRecord]) -> tuple[int, int]:
            offsets = [(await self._inner.append(self._log.chunks, [c]))[0] for c in chunks]
            return self._inner.partition, offsets[0]

        pointed = await self._log.pointers(records, store)
        return await self._inner.append(topic, pointed, commit=commit)

    async def close(self) -> None:
        await self._inner.close()


class ChunkedConsumer:
    """A group member whose polls return oversized records whole."""

    def __init__(self, log: ChunkedLog, inner: GroupConsumer) -> None:
        self._log, self._inner = log, inner

    @property
    def member_id(self) -> str:
        return self._inner.member_id

    def assignment(self) -> frozenset[int]:
        return self._inner.assignment()

    async def poll(self, timeout_s: float) -> list[Record]:
        return await self._log.whole(await self._inner.poll(timeout_s))

    def seek(self, partition: int, offset: int) -> None:
        self._inner.seek(partition, offset)

    async def commit(self, offsets: Any) -> None:
        await self._inner.commit(offsets)

    async def close(self) -> None:
        await self._inner.close()
