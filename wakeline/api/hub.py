"""The API's event streams: shared followers (:mod:`wakeline.following`) and, per API key, a
limit on the streams open at once (:class:`StreamSlots`)."""

from __future__ import annotations

import asyncio
from collections import Counter

from wakeline.following import EventHub, OverflowedError, Subscription

__all__ = ["EventHub", "OverflowedError", "StreamSlots", "Subscription"]


class StreamSlots:
    """How many streams each API key has open, at most ``per_key``."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._open: Counter[str] = Counter()
        self._freed = asyncio.Event()

    def acquire(self, name: str) -> bool:
        if self._open[name] >= self.per_key:
            return False
        self._open[name] += 1
        return True

    def release(self, name: str) -> None:
        self._open[name] -= 1
        if self._open[name] <= 0:
            del self._open[name]
        self._freed.set()
        self._freed = asyncio.Event()

    def open(self, name: str) -> int:
        return self._open[name]

    async def wait_released(self) -> None:
        """Until the next :meth:`release` (for tests)."""
        await self._freed.wait()
