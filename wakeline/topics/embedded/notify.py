"""In-process wake-ups of the embedded log: readers waiting on the event loop for appends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


class Notifier:
    """Wakes the readers of this process when records land (one event per waited-on key).

    ``event(topic, partition)`` is the event of one partition, ``event(topic, None)`` fires on
    an append to any partition of ``topic``.  Events are replaced once fired, so a waiter takes
    a fresh one *before* it looks for records and cannot miss a wake-up.
    """

    def __init__(self) -> None:
        self._events: dict[tuple[str, int | None], asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

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

    def notify_threadsafe(self, topic: str, partitions: Iterable[int]) -> None:
        """Called from the write thread after a commit; a no-op when nobody waits."""
        loop = self._loop
        if self._events and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self.notify, topic, partitions)


async def wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Wait until ``event`` is set or ``timeout_s`` passed, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
