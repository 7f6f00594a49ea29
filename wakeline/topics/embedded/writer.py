"""The fenced writer of the embedded log (see :mod:`wakeline.topics.embedded.log`).

``EmbeddedLog.writer(writer_id, partition)`` bumps the epoch of ``writer_id``; every append of
an :class:`EmbeddedWriter` checks that epoch in the write transaction that writes it, so the
appends of a fenced writer raise :class:`~wakeline.topics.port.FencedError` and write nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from wakeline.topics import contract
from wakeline.topics.embedded.appends import AppendOp
from wakeline.topics.port import OffsetCommit, OutRecord

if TYPE_CHECKING:
    from wakeline.topics.embedded.log import EmbeddedLog


class EmbeddedWriter:
    """A fenced :class:`~wakeline.topics.port.PartitionWriter` of the embedded log.

    Appends are group-committed by the log's write thread: the appends that queue up while one
    transaction runs -- of this writer and of any other writer or caller of the same
    :class:`~wakeline.topics.embedded.log.EmbeddedLog` -- go together into the next one (one
    ``COMMIT``, one fsync under ``sync=full``), and every caller gets its own offsets back once
    that ``COMMIT`` returned.  Each append is still atomic on its own; a fenced append fails
    alone, a failed transaction fails every append in it, and none of them landed.
    """

    def __init__(self, log: EmbeddedLog, writer_id: str, partition: int, epoch: int) -> None:
        self._log = log
        self.writer_id = writer_id
        self.epoch = epoch
        self._partition = partition
        self._fence = (writer_id, epoch)
        self._closed = False
        self._last_transaction = 0
        self.transactions = 0
        """Write transactions this writer's appends went in so far (each holds one or more
        appends)."""

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
        log = self._log
        meta = log.store.cached_meta(topic) or await log.meta(topic)
        meta.check(self._partition)
        log.check_sizes(topic, records)
        if commit is not None:
            contract.check_offsets([commit.next_offset])
        group = (meta, [self._partition] * len(records), list(records))
        op = AppendOp((group,), self._fence, () if commit is None else (commit,))
        [offsets], transaction, _ = await log.store.append(op)
        if transaction != self._last_transaction:
            self._last_transaction = transaction
            self.transactions += 1
        return offsets

    async def close(self) -> None:
        self._closed = True
