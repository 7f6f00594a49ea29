"""The fenced writer of the embedded log (see :mod:`wakeline.topics.embedded.log`).

``EmbeddedLog.writer(writer_id, partition)`` bumps the epoch of ``writer_id``; every append of
an :class:`EmbeddedWriter` checks that epoch in its own write transaction, so the appends of
a fenced writer raise :class:`~wakeline.topics.port.FencedError` and write nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wakeline.topics import contract
from wakeline.topics.embedded.schema import TopicMeta
from wakeline.topics.port import OffsetCommit, OutRecord

if TYPE_CHECKING:
    from wakeline.topics.embedded.log import EmbeddedLog


class EmbeddedWriter:
    """A fenced :class:`~wakeline.topics.port.PartitionWriter` of the embedded log.

    Appends are group-committed: the appends that queue up while one transaction runs go
    together into the next one (one fence check, one ``COMMIT``), and every caller gets its
    own offsets back.  Each append is still atomic on its own; a failed transaction fails every
    append in it, and none of them landed.
    """

    def __init__(self, log: EmbeddedLog, writer_id: str, partition: int, epoch: int) -> None:
        self._log = log
        self.writer_id = writer_id
        self.epoch = epoch
        self._partition = partition
        self._closed = False
        self._queue: list[_PendingAppend] = []
        self._flusher: asyncio.Task[None] | None = None
        self.transactions = 0
        """Write transactions run so far (each holds one or more appends)."""

    @property
    def partition(self) -> int:
        return self._partition

    async def append(
        self,
        topic: str,
        records: Sequence[OutRecord],
        *,
        commit: OffsetCommit | None = None,
    ) -> list[int]:
        contract.check_open(self._closed, f"writer {self.writer_id!r}")
        meta = await self._log.meta(topic)
        meta.check(self._partition)
        self._log.check_sizes(topic, records)
        if commit is not None:
            contract.check_offsets([commit.next_offset])
        pending = _PendingAppend(meta, list(records), commit)
        self._queue.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await pending.done

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            groups = [(p.meta, [self._partition] * len(p.records), p.records) for p in batch]
            commits = [p.commit for p in batch if p.commit is not None]
            self.transactions += 1
            try:
                results = await self._log.write_groups(
                    groups, fence=(self.writer_id, self.epoch), commits=commits
                )
            except BaseException as exc:
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for p, offsets in zip(batch, results, strict=True):
                if not p.done.done():
                    p.done.set_result(offsets)

    async def close(self) -> None:
        self._closed = True
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)


class _PendingAppend:
    __slots__ = ("commit", "done", "meta", "records")

    def __init__(
        self, meta: TopicMeta, records: list[OutRecord], commit: OffsetCommit | None
    ) -> None:
        self.meta = meta
        self.records = records
        self.commit = commit
        self.done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
