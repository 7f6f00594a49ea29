"""Every run's journal as the log holds it, read incrementally: for soak tests and benchmarks
that watch runs from outside the workers."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import Event, RunCompleted
from wakeline.topics.port import Log, LogUnavailableError, Record

_RETRY_S = 60.0  # how long a reader rides out a broker that does not answer


@dataclass
class Journals:
    """Every record of an events topic, read incrementally in offset order, decoded, by run;
    ``refresh()`` reads what was appended since the last call."""

    log: Log
    topic: str
    offsets: dict[int, int] = field(default_factory=dict)
    records: dict[str, list[tuple[Record, Event]]] = field(default_factory=dict)
    completed: Counter[str] = field(default_factory=Counter)
    unavailable: list[str] = field(default_factory=list)  # reads retried: the log was away

    _reads: dict[int, asyncio.Task[list[Record]]] = field(default_factory=dict, repr=False)

    async def refresh(self) -> None:
        """Read everything appended since the last call, without waiting."""
        for partition in range(await self.log.partition_count(self.topic)):
            end = await self.log.end_offset(self.topic, partition)
            while self.offsets.get(partition, 0) < end:
                offset = self.offsets.get(partition, 0)
                batch = await self._read_retrying(partition, offset)
                if not batch:
                    break
                self._take(partition, batch)

    async def wait(self, condition: Callable[[Journals], bool], *, timeout_s: float) -> None:
        """Follow the topic until ``condition(self)`` holds, checked after every batch read:
        long-poll reads of every partition, no sleeping.  Raises :class:`TimeoutError` after
        ``timeout_s``; call :meth:`aclose` when done waiting."""
        await self.refresh()
        async with asyncio.timeout(timeout_s):
            while not condition(self):
                await self._next_batches()

    async def aclose(self) -> None:
        """Let the long-poll reads :meth:`wait` left running end (each within a second)."""
        reads, self._reads = list(self._reads.values()), {}
        await asyncio.gather(*reads, return_exceptions=True)

    async def _next_batches(self) -> None:
        for partition in range(await self.log.partition_count(self.topic)):
            if partition not in self._reads:
                read = self.log.read(
                    self.topic,
                    partition,
                    self.offsets.get(partition, 0),
                    max_records=5000,
                    timeout_s=1.0,
                )
                self._reads[partition] = asyncio.ensure_future(read)
        done, _ = await asyncio.wait(self._reads.values(), return_when=asyncio.FIRST_COMPLETED)
        for partition, task in list(self._reads.items()):
            if task in done:
                del self._reads[partition]
                if isinstance(task.exception(), LogUnavailableError):
                    self.unavailable.append(str(task.exception()))  # polled again next time
                    continue
                self._take(partition, task.result())

    async def _read_retrying(self, partition: int, offset: int) -> Sequence[Record]:
        """A read that rides out a log that is briefly away (a broker busy on a loaded
        machine), noting each retry in :attr:`unavailable`; other errors raise at once."""
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + _RETRY_S, 0.05
        while True:
            try:
                return await self.log.read(self.topic, partition, offset, max_records=5000)
            except LogUnavailableError as exc:
                self.unavailable.append(str(exc))
                if loop.time() + pause > deadline:
                    raise
            await asyncio.sleep(pause)  # a back-off between retries, not a sync point
            pause = min(pause * 2, 2.0)

    def _take(self, partition: int, batch: Sequence[Record]) -> None:
        codec = event_codec()
        offset = self.offsets.get(partition, 0)
        for record in batch:
            if record.offset < offset:
                continue  # read twice (by refresh and by a long poll): counted once
            event = codec.decode(record.value)
            self.records.setdefault(event.run_id, []).append((record, event))
            if isinstance(event.payload, RunCompleted):
                self.completed[event.run_id] += 1
            offset = record.offset + 1
        self.offsets[partition] = offset
