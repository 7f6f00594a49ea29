"""The records an :class:`~wakeline.topics.embedded.log.EmbeddedLog` appended last, per
partition, so that a reader of the same process that waits for them (a client following a
run, the API's streams) gets them without a trip to the read thread.  The log reads from the
tail only in a read that has already waited, i.e. found nothing at its offset in the
database before: what the tail holds from there on was committed after that look, so it is
what the database holds (a read of records that were there already, an audit's for one,
always reads the database).

Only committed records are kept: they are added on the event loop once their ``COMMIT``
returned, before the readers of their partition are woken.  A partition's tail is one run
of consecutive offsets; an append whose first offset does not follow it (another process, or
another ``EmbeddedLog`` of this one, appended in between) starts a new run, so the tail never
has a hole.  A read is served from the tail only when its offset is inside that run, with
exactly the records (key, value, headers, timestamp) that SQLite holds at those offsets;
anything else is read from the database.  Each partition keeps at most ``max_records``
records and ``max_bytes`` bytes of values, the oldest dropped first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from wakeline.topics.port import OutRecord, Record

_Entry = tuple[int, OutRecord, int]
"""Offset, record, timestamp."""


class _Run:
    __slots__ = ("bytes", "entries", "first")

    def __init__(self, first: int) -> None:
        self.first = first
        self.entries: deque[_Entry] = deque()
        self.bytes = 0

    @property
    def end(self) -> int:
        return self.first + len(self.entries)


class Tail:
    """See the module docstring."""

    def __init__(self, *, max_records: int = 1024, max_bytes: int = 1 << 20) -> None:
        self._runs: dict[tuple[str, int], _Run] = {}
        self._max_records = max_records
        self._max_bytes = max_bytes
        self.hits = 0
        """Reads served from the tail so far."""

    def add(
        self,
        topic: str,
        partition: int,
        offsets: Sequence[int],
        records: Sequence[OutRecord],
        ts: int,
    ) -> None:
        """Records of one committed append to ``partition``, at consecutive ``offsets``."""
        if not offsets:
            return
        key = (topic, partition)
        run = self._runs.get(key)
        if run is None or run.end != offsets[0]:
            run = self._runs[key] = _Run(offsets[0])
        for offset, record in zip(offsets, records, strict=True):
            run.entries.append((offset, record, ts))
            run.bytes += len(record.value)
        while run.entries and (len(run.entries) > self._max_records or run.bytes > self._max_bytes):
            _, dropped, _ = run.entries.popleft()
            run.bytes -= len(dropped.value)
            run.first += 1

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record] | None:
        """The records from ``offset`` (at most ``limit``) if the tail holds ``offset``;
        ``None`` means: read the database."""
        run = self._runs.get((topic, partition))
        if run is None or not run.first <= offset < run.end:
            return None
        self.hits += 1
        start = offset - run.first
        stop = min(len(run.entries), start + limit)
        out = []
        for i in range(start, stop):
            at, record, ts = run.entries[i]
            out.append(
                Record(topic, partition, at, record.key, record.value, tuple(record.headers), ts)
            )
        return out
