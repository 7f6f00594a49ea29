"""Every run's journal as the log holds it, read incrementally: for soak tests and benchmarks
that watch runs from outside the workers."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import Event, RunCompleted
from wakeline.topics.port import Log, Record


@dataclass
class Journals:
    """Every record of an events topic, read incrementally in offset order, decoded, by run;
    ``refresh()`` reads what was appended since the last call."""

    log: Log
    topic: str
    offsets: dict[int, int] = field(default_factory=dict)
    records: dict[str, list[tuple[Record, Event]]] = field(default_factory=dict)
    completed: Counter[str] = field(default_factory=Counter)

    async def refresh(self) -> None:
        codec = event_codec()
        for partition in range(await self.log.partition_count(self.topic)):
            offset = self.offsets.get(partition, 0)
            end = await self.log.end_offset(self.topic, partition)
            while offset < end:
                batch = await self.log.read(self.topic, partition, offset, max_records=5000)
                if not batch:
                    break
                for record in batch:
                    event = codec.decode(record.value)
                    self.records.setdefault(event.run_id, []).append((record, event))
                    if isinstance(event.payload, RunCompleted):
                        self.completed[event.run_id] += 1
                offset = batch[-1].offset + 1
            self.offsets[partition] = offset
