"""One follower per partition for everyone who follows runs: :class:`EventHub`.

The API's event streams and :meth:`wakeline.Client.watch` (and so ``Client.result``) each
read through a :class:`Subscription`, a :class:`~wakeline.topics.port.LogReader` that
:func:`~wakeline.watching.watch_run` reads as it would read the log.  History (offsets before
the subscription joined a partition) is read from the log directly, once; from then on the
partition's single shared follower pushes each new batch to each subscriber's bounded queue
-- only the records of its run when the subscription is keyed -- and an idle follower of a
run costs nothing until something arrives.  A subscriber whose queue is full (one that reads
too slowly) is dropped and never holds up the others: an API stream ends
(:attr:`Subscription.overflowed`), a client's subscription (``resync=True``) reads on from
the log itself and joins again.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections import defaultdict

from wakeline.topics.port import LogReader, Record

log = logging.getLogger("wakeline.following")

Key = tuple[str, int]
"""A partition of a topic."""

DEFAULT_QUEUE_BATCHES = 256
IDLE_WAIT_S = 30.0
"""The longest a subscriber's read waits for a push before it looks again."""


class OverflowedError(Exception):
    """The subscriber did not keep up: more batches waited than its queue holds."""


class Subscription:
    """One follower's view of the log (see the module's docstring)."""

    def __init__(
        self, hub: EventHub, max_batches: int, *, key: bytes | None = None, resync: bool = False
    ) -> None:
        self._hub = hub
        self.max_batches = max_batches
        self.key = key
        """Only records with this key are pushed (``None``: every record)."""
        self.resync = resync
        self._pushed: collections.deque[tuple[Key, list[Record]]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
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
        self._check()
        if key not in self._live_from:
            self._live_from[key] = await self._hub.join(self, key)
        if offset < self._live_from[key]:
            return await self._hub.log.read(topic, partition, offset, max_records=max_records)
        found = self._take(key, offset, max_records)
        if not found and timeout_s > 0 and key in self._live_from:
            await self._wait(max(timeout_s, IDLE_WAIT_S))
            found = self._take(key, offset, max_records)
        if key not in self._live_from:  # resynced meanwhile: what was pushed is gone
            return await self._hub.log.read(topic, partition, offset, max_records=max_records)
        return found

    async def _wait(self, timeout_s: float) -> None:
        """Until the next push (or failure), at most ``timeout_s``: one future and one timer,
        no queue or timeout machinery (this is on the path of every followed step)."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout_s, _release, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _take(self, key: Key, offset: int, max_records: int) -> list[Record]:
        self._check()
        while self._pushed:
            self._buffer(self._pushed.popleft())
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
        if not self.overflowed.is_set():
            return
        if not self.resync:
            raise OverflowedError(f"more than {self.max_batches} batches of records waited")
        # what was pushed is dropped: the next reads go to the log itself, then join again
        self.overflowed.clear()
        self._pushed.clear()
        self._buffers.clear()
        self._live_from.clear()

    def push(self, key: Key, records: list[Record]) -> bool:
        """Queue a batch; ``False`` (and :attr:`overflowed` set) when the queue is full."""
        if len(self._pushed) >= self.max_batches:
            self.overflowed.set()
            self._wake()
            return False
        self._pushed.append((key, records))
        self._wake()
        return True

    def fail(self, message: str) -> None:
        self.error = message
        self._wake()

    def _wake(self) -> None:
        """Wake a reader that waits (it then takes what was pushed, raises, or resyncs)."""
        _release(self._waiter)

    def close(self) -> None:
        self._hub.leave(self)


def _release(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class _Follower:
    """The one reader of a partition, pushing each new batch to its subscribers."""

    def __init__(self, hub: EventHub, key: Key, position: int) -> None:
        self.key = key
        self.position = position
        self.subscribers: set[Subscription] = set()  # every record
        self.keyed: defaultdict[bytes, set[Subscription]] = defaultdict(set)
        self._hub = hub
        self.task = asyncio.create_task(self._run(), name=f"wakeline-follow-{key}")

    def add(self, subscription: Subscription) -> None:
        if subscription.key is None:
            self.subscribers.add(subscription)
        else:
            self.keyed[subscription.key].add(subscription)

    def discard(self, subscription: Subscription) -> None:
        self.subscribers.discard(subscription)
        if subscription.key is not None:
            same = self.keyed.get(subscription.key)
            if same is not None:
                same.discard(subscription)
                if not same:
                    del self.keyed[subscription.key]

    @property
    def idle(self) -> bool:
        return not self.subscribers and not self.keyed

    async def _run(self) -> None:
        topic, partition = self.key
        try:
            while self._hub.follows(self):  # left alone: ends after its read (never cut off)
                records = await self._hub.log.read(
                    topic, partition, self.position, timeout_s=self._hub.poll_s
                )
                if records:
                    self.position = records[-1].offset + 1
                    self._push(records)
        except Exception as exc:  # a log error: end every stream of the partition
            log.warning("the follower of %s/%d failed: %s", topic, partition, exc)
            for subscriber in self._all():
                subscriber.fail(f"{type(exc).__name__}: {exc}")
            self._hub.drop(self)

    def _push(self, records: list[Record]) -> None:
        pushes = [(s, records) for s in self.subscribers]
        if self.keyed:
            by_key: defaultdict[bytes | None, list[Record]] = defaultdict(list)
            for record in records:
                by_key[record.key].append(record)
            for record_key, mine in by_key.items():
                if record_key is not None and record_key in self.keyed:
                    pushes += [(s, mine) for s in self.keyed[record_key]]
        for subscriber, batch in pushes:
            if not subscriber.push(self.key, batch):
                self._hub.leave(subscriber)

    def _all(self) -> list[Subscription]:
        return [*self.subscribers, *(s for same in self.keyed.values() for s in same)]


class EventHub:
    """The followers of the partitions that subscriptions read (one each, while in use)."""

    def __init__(
        self, log: LogReader, *, poll_s: float = 0.2, queue_batches: int = DEFAULT_QUEUE_BATCHES
    ) -> None:
        self.log = log
        self.poll_s = poll_s
        self.queue_batches = queue_batches
        self._followers: dict[Key, _Follower] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # also of followers on their way out
        self._lock = asyncio.Lock()

    def subscribe(self, *, key: bytes | None = None, resync: bool = False) -> Subscription:
        """A new subscription: of one key's records, or of all; ``resync``: reads on from the
        log after an overflow instead of raising :class:`OverflowedError`."""
        return Subscription(self, self.queue_batches, key=key, resync=resync)

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
                self._tasks.add(follower.task)
                follower.task.add_done_callback(self._tasks.discard)
            follower.add(subscription)
            return follower.position

    def leave(self, subscription: Subscription) -> None:
        for follower in list(self._followers.values()):
            follower.discard(subscription)
            if follower.idle:
                self.drop(follower)

    def follows(self, follower: _Follower) -> bool:
        return self._followers.get(follower.key) is follower

    def drop(self, follower: _Follower) -> None:
        """Stop ``follower``: it ends when its read in progress returns (cancelling a read
        would cost a Kafka reader)."""
        if self._followers.get(follower.key) is follower:
            del self._followers[follower.key]

    def cancel(self) -> list[asyncio.Task[None]]:
        """Stop every follower now (their tasks, cancelled, are returned)."""
        self._followers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks

    async def close(self) -> None:
        await asyncio.gather(*self.cancel(), return_exceptions=True)
