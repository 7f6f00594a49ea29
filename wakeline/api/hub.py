"""One follower per partition for all the API's event streams: :class:`EventHub`.

Each open stream is a :class:`Subscription`, a :class:`~wakeline.topics.port.LogReader` that
:func:`~wakeline.watching.watch_run` reads as it would read the log.  History (offsets before
the subscription joined a partition) is read from the log directly, once; from then on the
partition's single shared follower pushes every new batch to each subscriber's bounded queue,
and an idle stream costs nothing until something arrives.  A subscriber whose queue is full
(a client that reads too slowly) is dropped -- :attr:`Subscription.overflowed` -- and never
holds up the others.

:class:`StreamSlots` limits the streams open per API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

from wakeline.topics.port import Log, Record

log = logging.getLogger("wakeline.api")

Key = tuple[str, int]
"""A partition of a topic."""

DEFAULT_QUEUE_BATCHES = 256
IDLE_WAIT_S = 30.0
"""The longest a subscriber's read waits for a push before it looks again."""


class OverflowedError(Exception):
    """The subscriber did not keep up: more batches waited than its queue holds."""


class Subscription:
    """One stream's view of the log (see the module's docstring)."""

    def __init__(self, hub: EventHub, max_batches: int) -> None:
        self._hub = hub
        self.max_batches = max_batches
        self._queue: asyncio.Queue[tuple[Key, list[Record]]] = asyncio.Queue(max_batches)
        self._live_from: dict[Key, int] = {}
        self._buffers: dict[Key, list[Record]] = {}
        self.overflowed = asyncio.Event()
        self.error: str | None = None

    async def partition_count(self, topic: str) -> int:
        return await self._hub.log.partition_count(topic)

    async def end_offset(self, topic: str, partition: int) -> int:
        return await self._hub.log.end_offset(topic, partition)

    async def read(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = 1000,
        timeout_s: float = 0.0,
    ) -> list[Record]:
        """Records of ``topic[partition]`` at ``offset`` and after: history from the log, then
        what the shared follower pushed; with ``timeout_s``, waits for the next push."""
        key = (topic, partition)
        if key not in self._live_from:
            self._live_from[key] = await self._hub.join(self, key)
        if offset < self._live_from[key]:
            return await self._hub.log.read(topic, partition, offset, max_records=max_records)
        found = self._take(key, offset, max_records)
        if not found and timeout_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(timeout_s, IDLE_WAIT_S)):
                    self._buffer(await self._queue.get())
            found = self._take(key, offset, max_records)
        return found

    def _take(self, key: Key, offset: int, max_records: int) -> list[Record]:
        self._check()
        while not self._queue.empty():
            self._buffer(self._queue.get_nowait())
        found = [r for r in self._buffers.pop(key, ()) if r.offset >= offset]
        if len(found) > max_records:
            self._buffers[key] = found[max_records:]
        return found[:max_records]

    def _buffer(self, item: tuple[Key, list[Record]]) -> None:
        self._check()
        key, records = item
        self._buffers.setdefault(key, []).extend(records)

    def _check(self) -> None:
        if self.error is not None:
            raise RuntimeError(self.error)
        if self.overflowed.is_set():
            raise OverflowedError(f"more than {self.max_batches} batches of records waited")

    def push(self, key: Key, records: list[Record]) -> bool:
        """Queue a batch; ``False`` (and :attr:`overflowed` set) when the queue is full."""
        try:
            self._queue.put_nowait((key, records))
        except asyncio.QueueFull:
            self.overflowed.set()
            self._wake()
            return False
        return True

    def fail(self, message: str) -> None:
        self.error = message
        self._wake()

    def _wake(self) -> None:
        """Wake a reader that waits on the queue (it then raises)."""
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait((("", -1), []))

    def close(self) -> None:
        self._hub.leave(self)


class _Follower:
    """The one reader of a partition, pushing each new batch to its subscribers."""

    def __init__(self, hub: EventHub, key: Key, position: int) -> None:
        self.key = key
        self.position = position
        self.subscribers: set[Subscription] = set()
        self._hub = hub
        self.task = asyncio.create_task(self._run(), name=f"wakeline-api-follow-{key}")

    async def _run(self) -> None:
        topic, partition = self.key
        try:
            while True:
                records = await self._hub.log.read(
                    topic, partition, self.position, timeout_s=self._hub.poll_s
                )
                if not records:
                    continue
                self.position = records[-1].offset + 1
                for subscriber in list(self.subscribers):
                    if not subscriber.push(self.key, records):
                        self._hub.leave(subscriber)
        except Exception as exc:  # a log error: end every stream of the partition
            log.warning("the API's follower of %s/%d failed: %s", topic, partition, exc)
            for subscriber in list(self.subscribers):
                subscriber.fail(f"{type(exc).__name__}: {exc}")
            self._hub.drop(self)


class EventHub:
    """The followers of the partitions that open streams read (one each, while in use)."""

    def __init__(
        self, log: Log, *, poll_s: float = 0.2, queue_batches: int = DEFAULT_QUEUE_BATCHES
    ) -> None:
        self.log = log
        self.poll_s = poll_s
        self.queue_batches = queue_batches
        self._followers: dict[Key, _Follower] = {}
        self._lock = asyncio.Lock()

    def subscribe(self) -> Subscription:
        return Subscription(self, self.queue_batches)

    @property
    def followers(self) -> int:
        return len(self._followers)

    async def join(self, subscription: Subscription, key: Key) -> int:
        """Add ``subscription`` to ``key``'s follower (started if needed); the offset from
        which the follower pushes to it."""
        async with self._lock:
            follower = self._followers.get(key)
            if follower is None:
                position = await self.log.end_offset(*key)
                follower = self._followers[key] = _Follower(self, key, position)
            follower.subscribers.add(subscription)
            return follower.position

    def leave(self, subscription: Subscription) -> None:
        for follower in list(self._followers.values()):
            follower.subscribers.discard(subscription)
            if not follower.subscribers:
                self.drop(follower)

    def drop(self, follower: _Follower) -> None:
        if self._followers.get(follower.key) is follower:
            del self._followers[follower.key]
        if follower.task is not asyncio.current_task():
            follower.task.cancel()

    async def close(self) -> None:
        followers = list(self._followers.values())
        self._followers.clear()
        for follower in followers:
            follower.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower.task


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
