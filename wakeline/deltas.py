"""Live text of streamed model calls: workers publish it, :meth:`Client.watch` merges it.

While a model call streams (``ctx.llm(..., stream=True)``), each text delta goes to the deltas
topic (key = run id, short retention) as a :class:`~wakeline.schemas.deltas.Delta`.  The
journal records only the final message: deltas are best effort and never touch a run.

* :class:`DeltaPublisher` (one per worker): the provider's callback queues the delta and
  returns at once; one background task appends the queue in order, in batches.  A full queue
  drops deltas, a failed append is logged and dropped: a run never waits for or fails on them.
* :class:`DeltaFollower` (one per watcher): reads a run's deltas from the moment it was
  created and decides which to yield around the journal events: only deltas of calls that are
  open (requested, streaming, no result yet) in the watcher's view, each before the call's
  result event, never after it.  A watcher that joins mid-call gets that call's deltas from
  then on (``index`` shows where it joined); a call whose result it has seen gets none.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from wakeline.core.model import DeltaSink
from wakeline.schemas.codec import DecodeError
from wakeline.schemas.deltas import Delta, delta_codec
from wakeline.schemas.events import Event, ModelCallRequested
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import Log, LogReader, OutRecord, UnknownTopicError

log = logging.getLogger(__name__)

STREAM_POLL_S = 0.05
"""How long a watcher waits for journal events while a call it follows streams."""


class DeltaPublisher:
    """Appends the deltas of one worker's streamed calls, in order, off the calls' path."""

    def __init__(
        self,
        log: Log,
        topic: str,
        *,
        writer: str,
        clock: Callable[[], float] = time.time,
        max_pending: int = 10_000,
        max_batch: int = 500,
    ) -> None:
        self._log = log
        self._topic = topic
        self._writer = writer
        self._clock = clock
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._pending: deque[OutRecord] = deque()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.dropped = 0
        self.failures = 0

    def sink(self, run_id: str, seq: int) -> DeltaSink:
        """The callback for the streamed call at ``seq`` of ``run_id``: it never raises."""
        counter = itertools.count()

        def on_delta(text: str) -> None:
            if not text:
                return
            try:
                now = int(self._clock() * 1000)
                self.publish(Delta(run_id, seq, next(counter), now, self._writer, text))
            except Exception:
                self.dropped += 1
                log.warning("run %s: a delta of seq %s was dropped", run_id, seq, exc_info=True)

        return on_delta

    def publish(self, delta: Delta) -> None:
        """Queue ``delta`` (dropped when the queue is full); the drain task appends it."""
        if len(self._pending) >= self._max_pending:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("deltas dropped: the log is slower than the streams (%d)", self.dropped)
            return
        value = delta_codec().encode(delta)
        self._pending.append(OutRecord(delta.run_id.encode(), value))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="deltas")

    async def _drain(self) -> None:
        try:
            while self._pending:
                count = min(len(self._pending), self._max_batch)
                batch = [self._pending.popleft() for _ in range(count)]
                try:
                    await self._log.append(self._topic, batch)
                    self.published += len(batch)
                except Exception as exc:
                    self._failed(len(batch), exc)
        finally:
            self._task = None  # no await since the queue was seen empty: nothing is stranded

    def _failed(self, count: int, exc: Exception) -> None:
        self.dropped += count
        self.failures += 1
        if self.failures == 1 or self.failures % 100 == 0:  # not once per batch: a missing
            log.warning(  # topic would flood the log
                "%d deltas could not be appended (%d failed appends so far): %s",
                count,
                self.failures,
                exc,
                exc_info=self.failures == 1,
            )

    async def flush(self) -> None:
        """Wait until everything queued so far was appended (or dropped)."""
        while self._task is not None:
            await asyncio.shield(self._task)


class DeltaFollower:
    """The deltas a watcher of one run yields, and where among the journal events."""

    def __init__(
        self,
        log: LogReader,
        topic: str | None,
        run_id: str,
        partition: int,
        offset: int,
        source: LogReader | None = None,
    ) -> None:
        self._log = log
        self._source = source or log
        """What the last poll of a call that ended reads: the log itself (``log`` may be a
        shared subscription, whose follower of the deltas may not have got that far yet)."""
        self._topic = topic
        """``None``: deltas are not followed (not asked for, or no deltas topic)."""
        self._key = run_id.encode()
        self._partition = partition
        self._offset = offset
        self._open: set[int] = set()
        """Streamed calls requested and without a result, in the watcher's view."""
        self._seen = 0
        """Events below this seq were yielded."""
        self._held: list[Delta] = []

    @classmethod
    async def start(
        cls,
        log: LogReader,
        topic: str,
        run_id: str,
        *,
        enabled: bool = True,
        source: LogReader | None = None,
    ) -> DeltaFollower:
        """A follower from the end of the run's deltas partition now (one that follows
        nothing when not ``enabled`` or when there is no deltas topic)."""
        if not enabled:
            return cls(log, None, run_id, 0, 0)
        try:
            partition = partition_for(run_id.encode(), await log.partition_count(topic))
            offset = await log.end_offset(topic, partition)
        except UnknownTopicError:
            log_missing(topic)
            return cls(log, None, run_id, 0, 0)
        return cls(log, topic, run_id, partition, offset, source)

    @property
    def streaming(self) -> bool:
        return bool(self._open)

    def wait_s(self, poll_s: float) -> float:
        """How long to wait for journal events: shorter while a call streams."""
        return min(poll_s, STREAM_POLL_S) if self._open else poll_s

    async def poll(self, *, final: bool = False) -> None:
        """Read the deltas appended since the last poll (without waiting); ``final``: from
        the log itself, after an event that ends a streamed call (its deltas came first)."""
        reader = self._source if final else self._log
        while self._topic is not None:
            records = await reader.read(self._topic, self._partition, self._offset)
            if not records:
                return
            self._offset = records[-1].offset + 1
            self.add(_decode(r.value) for r in records if r.key == self._key)

    def add(self, deltas: Iterable[Delta | None]) -> None:
        for delta in deltas:
            if delta is not None and (delta.seq in self._open or delta.seq >= self._seen):
                self._held.append(delta)

    def closes(self, events: Iterable[Event]) -> bool:
        """Whether one of ``events`` ends a call that streams (poll again before yielding)."""
        return any(_step_of(e) in self._open for e in events)

    def before(self, event: Event) -> list[Delta]:
        """Deltas to yield before ``event``: those held of the call it ends, if any."""
        step = _step_of(event)
        if step is None or step not in self._open:
            return []
        self._open.discard(step)
        out = [d for d in self._held if d.seq == step]
        self._held = [d for d in self._held if d.seq != step]
        return out

    def after(self, event: Event) -> None:
        """``event`` was yielded."""
        self._seen = max(self._seen, event.seq + 1)
        payload = event.payload
        if isinstance(payload, ModelCallRequested) and payload.stream and self._topic:
            self._open.add(event.seq)

    def ready(self) -> list[Delta]:
        """Deltas of open calls to yield now; deltas of calls not yet seen stay held."""
        out = [d for d in self._held if d.seq in self._open]
        self._held = [d for d in self._held if d.seq not in self._open and d.seq >= self._seen]
        return out


def _step_of(event: Event) -> int | None:
    step = getattr(event.payload, "step", None)
    return step if isinstance(step, int) else None


def _decode(value: bytes) -> Delta | None:
    try:
        return delta_codec().decode(value)
    except DecodeError:
        return None


_missing_logged: set[str] = set()


def log_missing(topic: str) -> None:
    if topic not in _missing_logged:
        _missing_logged.add(topic)
        log.warning("no topic %r: no live deltas (run `wakeline topics create`)", topic)
