"""Reads of the Kafka backend: a pool of non-group ``read_committed`` consumers.

A reader is one ``AIOKafkaConsumer`` (no group) assigned one partition, *paused while idle*:
it sends no fetch between reads, so an idle reader costs nothing and a seek never waits for a
stale long-poll.  A read resumes it, waits for records and pauses it again.  A reader keeps
its position: reading on from where the last read ended reuses records already fetched.

Concurrent reads of different partitions use different readers.  Concurrent reads of the same
partition share at most two readers while they read what is already there (``timeout_s=0``:
such a read is short, and a new consumer costs the broker a connection, ApiVersions and
Metadata): a third waits for one of them.  A read that waits for records (``timeout_s > 0``)
gets a reader of its own when none is idle.  Idle readers are kept (up to ``max_idle`` in all,
two per partition, five minutes unused) and closed oldest first.

``timeout_s=0``: the reader compares the offset with the partition's last stable offset
(ListOffsets, ``read_committed``; cached, it never goes back) and returns ``[]`` at once at the
end; otherwise it waits until the records arrive.  If only transaction markers or aborted
records were left below the last stable offset it returns ``[]`` too.  An offset beyond the
end waits (it is not reset); an offset deleted by retention raises :class:`LogError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from aiokafka import errors as kerrors
from aiokafka.structs import TopicPartition

from wakeline.topics import contract
from wakeline.topics.kafka.errors import map_error
from wakeline.topics.kafka.groups import to_record
from wakeline.topics.port import LogError, LogUnavailableError, Record

_IDLE_TTL_S = 300.0
_PER_PARTITION = 2


class Reader:
    """A non-group ``read_committed`` consumer of one partition, paused while idle."""

    def __init__(self, consumer: Any, tp: TopicPartition, offset: int) -> None:
        self.consumer = consumer
        self.tp = tp
        self.position = offset  # -1: unknown
        self.lso = 0  # last stable offset last seen (it never goes back)
        self.used = time.monotonic()

    async def read(self, offset: int, limit: int, timeout_s: float, wait_s: float) -> list[Record]:
        c, tp = self.consumer, self.tp
        loop = asyncio.get_running_loop()
        if self.position != offset:
            c.seek(tp, offset)
            self.position = offset
        if timeout_s <= 0:
            if offset >= self.lso:
                self.lso = max(self.lso, (await c.end_offsets([tp]))[tp])
                if offset >= self.lso:
                    return []
            deadline = loop.time() + wait_s  # records are there: wait for them
        else:
            deadline = loop.time() + timeout_s
        c.resume(tp)
        done = False
        try:
            while True:
                remaining = deadline - loop.time()
                step = remaining if timeout_s > 0 else min(remaining, 0.02)
                try:
                    batches = await c.getmany(
                        tp, timeout_ms=max(1, int(step * 1000)), max_records=limit
                    )
                except kerrors.OffsetOutOfRangeError:
                    await self._out_of_range(offset, min(0.05, max(0.0, remaining)))
                    batches = {}
                records = batches.get(tp)
                if records:
                    c.pause(tp)  # before any await: no prefetch is sent while idle
                    done = True
                    return [to_record(r) for r in records]
                self.lso = max(self.lso, c.last_stable_offset(tp) or 0)
                if timeout_s <= 0 and await self._position(deadline) >= self.lso:
                    done = True
                    return []  # only transaction markers or aborted records were left
                if loop.time() >= deadline:
                    if timeout_s > 0:
                        done = True
                        return []
                    raise LogUnavailableError(f"no fetch response for {tp} in {wait_s}s")
        finally:
            c.pause(tp)
            # -1 (unknown: the next read seeks) rather than wait for a position being reset
            self.position = await self._position(loop.time() + 1.0) if done else -1

    async def _position(self, deadline: float) -> int:
        """The consumer's position, or -1 if it has none before ``deadline``: aiokafka's
        ``position`` waits without a bound for a position being reset (after a fetch error,
        e.g. while a restarted broker recovers), and a read must not hang on it."""
        try:
            async with asyncio.timeout_at(deadline):  # no task per call, unlike wait_for
                return int(await self.consumer.position(self.tp))
        except TimeoutError:
            return -1

    async def _out_of_range(self, offset: int, pause: float) -> None:
        first = (await self.consumer.beginning_offsets([self.tp]))[self.tp]
        if offset < first:
            raise LogError(f"offset {offset} of {self.tp} was deleted (the log starts at {first})")
        await asyncio.sleep(pause)  # beyond the end: wait for it
        self.consumer.seek(self.tp, offset)


class ReaderPool:
    """Readers by partition; ``new_consumer`` makes an unstarted no-group consumer."""

    def __init__(self, new_consumer: Callable[[], Any], *, max_idle: int = 32) -> None:
        self._new_consumer = new_consumer
        self._max_idle = max_idle
        self._idle: dict[TopicPartition, list[Reader]] = {}
        self._busy: set[Reader] = set()
        self._short: Counter[TopicPartition] = Counter()  # readers in a timeout_s=0 read
        self._waiting: dict[TopicPartition, deque[asyncio.Future[None]]] = {}
        self.opened = 0  # readers opened so far (observability and tests)
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the readers live on

    async def read(
        self, tp: TopicPartition, offset: int, limit: int, timeout_s: float, wait_s: float
    ) -> list[Record]:
        what = f"read of {tp.topic!r}/{tp.partition}"
        try:
            reader = await self._acquire(tp, offset, short=timeout_s <= 0)
        except Exception as exc:  # a new reader that cannot bootstrap: the broker is away
            raise map_error(exc, what) from exc
        ok = False
        try:
            records = await reader.read(offset, limit, timeout_s, wait_s)
            ok = True
            return records
        except Exception as exc:
            raise map_error(exc, what) from exc
        finally:
            self._release(reader, ok, short=timeout_s <= 0)

    async def _acquire(self, tp: TopicPartition, offset: int, *, short: bool) -> Reader:
        contract.check_open(self._closed, "Kafka log")
        self._loop = asyncio.get_running_loop()
        while short and not self._idle.get(tp) and self._short[tp] >= _PER_PARTITION:
            freed = self._loop.create_future()
            self._waiting.setdefault(tp, deque()).append(freed)
            try:
                await freed  # a reader of ``tp`` was released
            except asyncio.CancelledError:
                if not freed.cancelled():  # woken, then cancelled: pass the turn on
                    self._wake(tp)
                raise
            contract.check_open(self._closed, "Kafka log")
        self._short[tp] += short
        try:
            idle = self._idle.get(tp)
            if idle:
                reader = next((r for r in idle if r.position == offset), idle[-1])
                idle.remove(reader)
            else:
                reader = await self._new_reader(tp, offset)
        except BaseException:
            self._done_short(tp, short)
            raise
        self._busy.add(reader)
        return reader

    async def _new_reader(self, tp: TopicPartition, offset: int) -> Reader:
        self.opened += 1
        consumer = self._new_consumer()
        try:
            await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        # all synchronous: the fetcher sees a valid, paused position from the start
        consumer.assign([tp])
        consumer.seek(tp, offset)
        consumer.pause(tp)
        return Reader(consumer, tp, offset)

    def _done_short(self, tp: TopicPartition, short: bool) -> None:
        if short:
            self._short[tp] -= 1
            if self._short[tp] <= 0:
                del self._short[tp]
        self._wake(tp)

    def _wake(self, tp: TopicPartition) -> None:
        waiting = self._waiting.get(tp)
        while waiting:
            freed = waiting.popleft()
            if not freed.done():
                freed.set_result(None)
                break
        if not waiting:
            self._waiting.pop(tp, None)

    def _release(self, reader: Reader, ok: bool, *, short: bool) -> None:
        self._busy.discard(reader)
        reader.used = now = time.monotonic()
        if not ok or self._closed:
            self._close_later(reader)
            self._done_short(reader.tp, short)
            return
        self._idle.setdefault(reader.tp, []).append(reader)
        pool = sorted((r for rs in self._idle.values() for r in rs), key=lambda r: r.used)
        count, here = len(pool), len(self._idle[reader.tp])
        for old in pool:
            crowded = old.tp == reader.tp and here > _PER_PARTITION
            if not (now - old.used > _IDLE_TTL_S or count > self._max_idle or crowded):
                continue
            self._idle[old.tp].remove(old)
            count -= 1
            here -= old.tp == reader.tp
            self._close_later(old)
        self._idle = {tp: rs for tp, rs in self._idle.items() if rs}
        self._done_short(reader.tp, short)

    def _close_later(self, reader: Reader) -> None:
        """Stop ``reader`` in the background, on the readers' own loop.  A read coroutine the
        garbage collector closes (its task was left on a closed loop) releases its reader
        wherever the collector ran: then there is no loop to stop it on, and nothing is
        scheduled on whichever loop happens to be running."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is None or running is not self._loop:
            return
        task = running.create_task(reader.consumer.stop())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def close(self) -> None:
        self._closed = True
        for waiting in self._waiting.values():
            for freed in waiting:
                if not freed.done():
                    freed.set_result(None)  # it finds the pool closed
        self._waiting.clear()
        readers = [r for rs in self._idle.values() for r in rs] + list(self._busy)
        self._idle.clear()
        for reader in readers:
            with contextlib.suppress(Exception):
                await reader.consumer.stop()
