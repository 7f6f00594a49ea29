"""In-process wake-ups of the embedded log: readers waiting on the event loop for appends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from wakeline.topics.embedded.appends import AppendOp
from wakeline.topics.embedded.threads import Job


class Notifier:
    """Wakes the readers of this process when records land (one event per waited-on key).

    ``event(topic, partition)`` is the event of one partition, ``event(topic, None)`` fires on
    an append to any partition of ``topic``.  Events are replaced once fired, so a waiter takes
    a fresh one *before* it looks for records and cannot miss a wake-up.
    """

    def __init__(self) -> None:
        self._events: dict[tuple[str, int | None], asyncio.Event] = {}

    def event(self, topic: str, partition: int | None) -> asyncio.Event:
        key = (topic, partition)
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = asyncio.Event()
        return event

    def notify(self, topic: str, partitions: Iterable[int]) -> None:
        for key in [(topic, None), *((topic, p) for p in partitions)]:
            event = self._events.pop(key, None)
            if event is not None:
                event.set()

    def appended(self, jobs: list[Job]) -> None:
        """Called on the loop with a batch of the write thread's jobs once they are answered:
        wakes the readers of the partitions the appends among them wrote to."""
        if not self._events:
            return
        for job in jobs:
            if isinstance(job.op, AppendOp) and job.error is None:
                for meta, partitions, _ in job.op.groups:
                    if partitions:
                        self.notify(meta.name, set(partitions))


async def wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Wait until ``event`` is set or ``timeout_s`` passed, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
