"""Drive projections from the log: catch up to the end, or follow the log live."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from wakeline.projections.store import Projection, ProjectionStore, subscribed_topics
from wakeline.topics.port import Log, LogError, Record

DEFAULT_CHUNK = 1000

OnFold = Callable[[Sequence[Record]], None]
"""Called after each batch of records is folded and written (e.g. to notify a dashboard)."""


async def _partitions(log: Log, topic: str, wanted: Iterable[int] | None) -> list[int]:
    count = await log.partition_count(topic)
    if wanted is None:
        return list(range(count))
    return sorted(p for p in set(wanted) if 0 <= p < count)


async def _targets(
    log: Log,
    projections: Sequence[Projection],
    topic_names: Mapping[str, str] | None,
    partitions: Iterable[int] | None,
) -> list[tuple[str, int]]:
    wanted = None if partitions is None else list(partitions)
    out: list[tuple[str, int]] = []
    for topic in subscribed_topics(projections, topic_names):
        out.extend((topic, p) for p in await _partitions(log, topic, wanted))
    return out


async def catch_up(
    log: Log,
    store: ProjectionStore,
    projections: Sequence[Projection],
    *,
    topic_names: Mapping[str, str] | None = None,
    partitions: Iterable[int] | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> int:
    """Fold every partition (or ``partitions``) of the projections' topics from the stored
    offset up to the end offset as of the call, ``chunk`` records per write.

    Returns the number of records folded.  A missing topic raises
    :class:`~wakeline.topics.port.UnknownTopicError`.
    """
    if chunk <= 0:
        raise ValueError("chunk must be positive")
    total = 0
    for topic, partition in await _targets(log, projections, topic_names, partitions):
        end = await log.end_offset(topic, partition)
        offset = store.offset(topic, partition)
        while offset < end:
            records = await log.read(topic, partition, offset, max_records=min(chunk, end - offset))
            if not records:
                break
            total += store.fold(records, projections, topic_names=topic_names)
            offset = records[-1].offset + 1
    return total


async def follow(
    log: Log,
    store: ProjectionStore,
    projections: Sequence[Projection],
    *,
    stop: asyncio.Event,
    topic_names: Mapping[str, str] | None = None,
    partitions: Iterable[int] | None = None,
    chunk: int = DEFAULT_CHUNK,
    poll_s: float = 0.25,
    on_fold: OnFold | None = None,
) -> int:
    """Fold new records as they are appended until ``stop`` is set; returns records folded.

    One task per (topic, partition) long-polls the log (``timeout_s=poll_s``), so ``stop`` is
    noticed within about ``poll_s``.  Retriable log errors are retried after ``poll_s``; any
    other error stops every task and propagates.  Folds run on the event loop thread one at a
    time, so the tasks never interleave inside a fold.
    """
    targets = await _targets(log, projections, topic_names, partitions)
    tail = _Tail(log, store, projections, topic_names, chunk, poll_s, on_fold)
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(tail.run(topic, p, stop)) for topic, p in targets]
    return sum(task.result() for task in tasks)


class _Tail:
    def __init__(
        self,
        log: Log,
        store: ProjectionStore,
        projections: Sequence[Projection],
        topic_names: Mapping[str, str] | None,
        chunk: int,
        poll_s: float,
        on_fold: OnFold | None,
    ) -> None:
        self.log = log
        self.store = store
        self.projections = projections
        self.topic_names = topic_names
        self.chunk = chunk
        self.poll_s = poll_s
        self.on_fold = on_fold

    async def run(self, topic: str, partition: int, stop: asyncio.Event) -> int:
        folded = 0
        while not stop.is_set():
            offset = self.store.offset(topic, partition)
            try:
                records = await self.log.read(
                    topic, partition, offset, max_records=self.chunk, timeout_s=self.poll_s
                )
            except LogError as exc:
                if not exc.retriable:
                    raise
                await _sleep_unless(stop, self.poll_s)
                continue
            if records:
                folded += self.store.fold(records, self.projections, topic_names=self.topic_names)
                if self.on_fold is not None:
                    self.on_fold(records)
        return folded


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
