"""Make a worker's journal store agree with the log before any run of a partition resumes.

The store's watermark for a partition advances only by folding records in offset order: by
reading the log (:func:`~wakeline.projections.runner.catch_up`) or through the partition's
:class:`~wakeline.actors.appender.JournalAppender`.  A state directory written by a worker
without that rule (wakeline before 0.2 folded each caller's records as its append returned, so
concurrent appends could leave a hole below the watermark) is not trusted: a partition without
this version's mark is folded again from offset 0.  A run whose stored journal is not dense
(0..n-1) also makes its partition fold again from 0 before the run is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from wakeline.projections.journal import JournalProjection
from wakeline.projections.runner import catch_up
from wakeline.projections.store import ProjectionStore
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import Event
from wakeline.topics.port import Log

log = logging.getLogger(__name__)

FORMAT = b"2"
"""The journal store format: 2 = the watermark never passes an unfolded record."""


def format_key(topic: str, partition: int) -> bytes:
    return f"meta/journal-format/{topic}/{partition:06d}".encode()


class JournalHoleError(RuntimeError):
    """A run's journal has a gap even in the log itself: nothing can resume it."""


class JournalSync:
    def __init__(
        self,
        log: Log,
        store: ProjectionStore,
        journal: JournalProjection,
        *,
        topic: str,
        topic_names: Mapping[str, str],
    ) -> None:
        self._log = log
        self._store = store
        self._journal = journal
        self._topic = topic
        self._topic_names = topic_names

    async def agree_with_log(self, partition: int) -> None:
        """Fold the partition up to the log's end offset (from 0 if the store is not trusted)."""
        key = format_key(self._topic, partition)
        if self._store.get(key) != FORMAT:
            if self._store.offset(self._topic, partition):
                log.warning("partition %s: journal store of an older format: refolding", partition)
            await self._refold(partition)
            self._store.put(key, FORMAT)
            return
        await self._catch_up(partition)

    async def load(self, run_id: str, partition: int) -> list[Event]:
        """The run's whole journal, decoded; a gap in the store is repaired from the log."""
        events = self._decode(run_id)
        if _dense(events):
            return events
        log.warning("run %s: stored journal has a gap; refolding partition %s", run_id, partition)
        await self._refold(partition)
        events = self._decode(run_id)
        if not _dense(events):
            raise JournalHoleError(f"run {run_id}: seqs {[e.seq for e in events]} have a gap")
        return events

    async def _refold(self, partition: int) -> None:
        self._store.rewind(self._topic, partition, 0)
        await self._catch_up(partition)

    async def _catch_up(self, partition: int) -> None:
        await catch_up(
            self._log,
            self._store,
            [self._journal],
            topic_names=self._topic_names,
            partitions=[partition],
        )

    def _decode(self, run_id: str) -> list[Event]:
        codec = event_codec()
        return [codec.decode(raw) for raw in self._journal.load(run_id)]


def _dense(events: list[Event]) -> bool:
    return all(e.seq == i for i, e in enumerate(events))
