"""The fenced writer of the Kafka backend (errors are mapped by :mod:`.errors`).

A :class:`KafkaWriter` is one transactional ``AIOKafkaProducer`` (``transactional_id`` =
the writer id, ``acks=all``, idempotent).  Opening it runs InitProducerId, which bumps the
id's producer epoch: every older producer with the same id is fenced, and a transaction it
left open is aborted by the transaction coordinator before the new writer gets its epoch.

Group commit: concurrent :meth:`KafkaWriter.append` calls are queued; one flusher task puts
everything queued (up to ``max_batch_records`` / ``max_batch_bytes``, and one consumer group
per transaction: aiokafka supports one) into ONE transaction: the records of every call, in
call order, to ``topic``/``partition``, then ``send_offsets_to_transaction`` with the
highest ``next_offset`` per (group, topic, partition), then commit.  Each caller gets the
offsets of its own records.  A call cancelled before its transaction began is dropped; once
it is in a transaction it lands or not with the whole transaction.  If the broker rejects a
record as too large, the batch is aborted and its calls are retried one transaction each,
so only the call with the oversized record fails.

What is atomic: one transaction = one flusher batch.  All of a batch's records (of every call
in it, on every topic) and its offset commits become visible to ``read_committed`` readers
and to the group coordinator together, or not at all.  So ``append(records, commit=c)`` is
atomic: the records and the commit land together.  :meth:`append` returns once EndTxn did;
Kafka writes the commit markers after that, so the writer notes what it committed in the
log's :class:`~wakeline.topics.kafka.visibility.Visibility` and a read in this process waits
for them first: a read right after an append sees it, and the next transaction does not wait.
Offsets are NOT dense: every committed
transaction adds a commit marker (one offset) to each partition it wrote, and aborted records
keep their offsets, invisible.

What a fenced zombie (an older writer of the same id) can and cannot do: it can no longer
add a partition, produce, commit offsets or end a transaction -- the broker rejects its epoch,
and its :meth:`append` raises :class:`FencedError` (the writer is unusable afterwards).  A
transaction it had open when the new writer started is aborted, so ``read_committed``
readers never see those records and their offset commits never apply.  Transactions it
committed before being fenced stay.  It CAN still use the unfenced paths
(:meth:`KafkaLog.append`, :meth:`GroupConsumer.commit`), and opening the id again fences the
newer writer in turn (opening a writer is the act of taking ownership).

Transient failures (broker restart, timeouts, coordinator moves): aiokafka retries produce
and transaction requests itself; an error it gives up on before the commit aborts the
transaction and the whole batch is retried with backoff.  If a batch has not completed after
``retry_deadline_s`` its callers get :class:`LogUnavailableError` and the writer is unusable:
the outcome of that transaction is unknown until the writer id is opened again (which
completes or aborts it); the writer never re-initialises itself, since that would fence a
newer owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka.producer import sender as aiokafka_sender
from aiokafka.structs import TopicPartition

from wakeline.topics import contract
from wakeline.topics.kafka.errors import map_error, producer_failed
from wakeline.topics.port import (
    FencedError,
    LogError,
    LogUnavailableError,
    OffsetCommit,
    OutRecord,
    RecordTooLargeError,
)

if TYPE_CHECKING:
    from wakeline.topics.kafka.log import KafkaLog

log = logging.getLogger(__name__)

CONCURRENT_TRANSACTIONS_BACKOFF_S = 0.0005


def shorten_concurrent_transactions_backoff() -> None:
    """Retry a transaction's first request 0.5 ms after CONCURRENT_TRANSACTIONS, not 20 ms.

    A writer begins its next transaction as soon as EndTxn returns, while the coordinator is
    still writing the previous one's markers (about a millisecond on one machine); until it
    is done AddPartitionsToTxn is answered CONCURRENT_TRANSACTIONS, which aiokafka retries
    after its fixed ``sender.BACKOFF_OVERRIDE`` of 20 ms (KAFKA-5477).  That wait was the
    p99 of a sequential run's step.  Called when a writer opens; a test pins the attribute.
    """
    if not hasattr(aiokafka_sender, "BACKOFF_OVERRIDE"):
        log.warning("aiokafka has no sender.BACKOFF_OVERRIDE: transactions retry at its pace")
        return
    current = aiokafka_sender.BACKOFF_OVERRIDE
    aiokafka_sender.BACKOFF_OVERRIDE = min(current, CONCURRENT_TRANSACTIONS_BACKOFF_S)


@dataclass(eq=False, slots=True)
class _Pending:
    topic: str
    records: Sequence[OutRecord]
    commit: OffsetCommit | None
    future: asyncio.Future[list[int]]
    size: int
    alone: bool = False  # retried in a transaction of its own


def _alone(item: _Pending) -> _Pending:
    return _Pending(item.topic, item.records, item.commit, item.future, item.size, alone=True)


class KafkaWriter:
    """A fenced :class:`~wakeline.topics.port.PartitionWriter`: see the module docstring.

    Create it with :meth:`KafkaLog.writer`; ``producer`` is a started transactional producer.
    """

    def __init__(
        self,
        log: KafkaLog,
        writer_id: str,
        partition: int,
        producer: Any,
        *,
        retry_deadline_s: float,
        max_batch_records: int = 5000,
        max_batch_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self._log = log
        self.writer_id = writer_id
        self._partition = partition
        self._producer = producer
        self._deadline_s = retry_deadline_s
        self._max_records = max_batch_records
        self._max_bytes = max_batch_bytes
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._error: LogError | None = None
        self._closed = False
        self.transactions = 0  # committed so far (observability and tests)

    @property
    def partition(self) -> int:
        return self._partition

    async def append(
        self,
        topic: str,
        records: Sequence[OutRecord],
        *,
        commit: OffsetCommit | None = None,
    ) -> list[int]:
        self._check_usable()
        await self._log.check_partition(topic, self._partition)
        size = self._log.check_sizes(topic, records)
        if commit is not None:
            contract.check_offsets([commit.next_offset])
        if not records and commit is None:
            return []
        self._check_usable()
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(topic, list(records), commit, future, size))
        self._wake.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_loop(), name=f"wakeline-kafka-writer-{self.writer_id}"
            )
        return await future

    async def close(self) -> None:
        """Let the queued appends finish, then close the producer."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            with contextlib.suppress(Exception):
                await flusher
        self._fail_all(LogError(f"writer {self.writer_id!r} is closed"))
        await self._stop_producer()
        self._log.forget_writer(self)

    # -- internals --------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._error is not None:
            raise type(self._error)(str(self._error))
        contract.check_open(self._closed, f"writer {self.writer_id!r}")

    async def _flush_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closed or self._error is not None:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._take_batch()
            if not batch:
                continue
            try:
                results = await self._commit_with_retries(batch)
            except LogError as exc:
                if self._error is not None:  # fenced or broken: nothing more can land
                    self._fail(batch, exc)
                    self._fail_all(self._error)
                    await self._stop_producer()
                    return
                if isinstance(exc, RecordTooLargeError) and len(batch) > 1:
                    self._queue[:0] = [_alone(item) for item in batch]  # find the culprit
                else:
                    self._fail(batch, exc)
                continue
            except BaseException as exc:  # a bug or cancellation: never leave callers hanging
                self._error = LogError(f"writer {self.writer_id!r} failed: {exc!r}")
                self._fail(batch, self._error)
                self._fail_all(self._error)
                raise
            for item, offsets in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(offsets)

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        records = size = 0
        group: str | None = None
        rest: list[_Pending] = []
        for i, item in enumerate(self._queue):
            if item.future.done():  # cancelled before its transaction began: dropped
                continue
            item_group = item.commit.group if item.commit is not None else None
            if batch and (item.alone or batch[0].alone):
                rest = self._queue[i:]
                break
            full = records + len(item.records) > self._max_records
            full = full or size + item.size > self._max_bytes
            if batch and (full or (item_group and group and item_group != group)):
                rest = self._queue[i:]
                break
            batch.append(item)
            records += len(item.records)
            size += item.size
            group = group or item_group
        self._queue = rest
        return batch

    async def _commit_with_retries(self, batch: list[_Pending]) -> list[list[int]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._deadline_s
        pause = 0.05
        while True:
            began = [False]
            try:
                return await asyncio.wait_for(
                    self._transaction(batch, began), max(0.001, deadline - loop.time())
                )
            except TimeoutError:
                self._error = LogUnavailableError(
                    f"writer {self.writer_id!r}: a transaction did not complete in"
                    f" {self._deadline_s}s; its outcome is unknown until the writer id is"
                    " opened again (open a new writer)"
                )
                raise self._error from None
            except Exception as exc:
                error = map_error(exc, f"writer {self.writer_id!r} transaction")
                if isinstance(error, FencedError):
                    self._error = error
                    raise error from exc
                if producer_failed(self._producer):  # e.g. OutOfOrderSequenceNumber
                    self._error = LogUnavailableError(
                        f"writer {self.writer_id!r}: its producer failed ({error}); open a new"
                        " writer"
                    )
                    raise self._error from exc
                if began[0] and not await self._abort(deadline):
                    self._error = LogUnavailableError(
                        f"writer {self.writer_id!r}: could not abort a failed transaction"
                        f" ({error}); open a new writer"
                    )
                    raise self._error from exc
                if not error.retriable or loop.time() + pause >= deadline:
                    raise error from exc
                log.info("writer %s: retrying a transaction after %s", self.writer_id, error)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def _transaction(self, batch: list[_Pending], began: list[bool]) -> list[list[int]]:
        producer = self._producer
        await producer.begin_transaction()
        began[0] = True
        futures: list[list[asyncio.Future[Any]]] = []
        commits: dict[tuple[str, TopicPartition], int] = {}
        for item in batch:
            sent = []
            for record in item.records:
                future = await producer.send(
                    item.topic,
                    record.value,
                    key=record.key,
                    partition=self._partition,
                    headers=list(record.headers) or None,
                )
                future.add_done_callback(_retrieve)  # a failed txn fails these too
                sent.append(future)
            futures.append(sent)
            if item.commit is not None:
                c = item.commit
                key = (c.group, TopicPartition(c.topic, c.partition))
                commits[key] = max(commits.get(key, -1), c.next_offset)
        steps: list[Awaitable[Any]] = [f for sent in futures for f in sent]
        if commits:
            (group,) = {g for g, _ in commits}
            to_commit = {tp: offset for (_, tp), offset in commits.items()}
            steps.append(producer.send_offsets_to_transaction(to_commit, group))
        # every record must be acknowledged before the commit: aiokafka would commit a
        # transaction in which a batch failed, so a failure here aborts instead
        await asyncio.gather(*steps)
        await producer.commit_transaction()
        began[0] = False
        self.transactions += 1
        results = [[f.result().offset for f in sent] for sent in futures]
        ends: dict[TopicPartition, int] = {}
        for item, offsets in zip(batch, results, strict=True):
            if offsets:
                tp = TopicPartition(item.topic, self._partition)
                ends[tp] = max(ends.get(tp, 0), offsets[-1] + 1)
        self._log.visibility.committed(ends, commits)  # reads here wait for the markers
        return results

    async def _abort(self, deadline: float) -> bool:
        """Abort the open transaction (True) or say that it could not be (False)."""
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(self._producer.abort_transaction(), max(0.001, remaining))
        except Exception as exc:
            log.warning("writer %s: abort failed: %r", self.writer_id, exc)
            return False
        return True

    def _fail(self, batch: Sequence[_Pending], error: BaseException) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(type(error)(str(error)))

    def _fail_all(self, error: BaseException) -> None:
        queued, self._queue = self._queue, []
        self._fail(queued, error)

    async def _stop_producer(self) -> None:
        _retrieve_internal_futures(self._producer)
        try:
            await self._producer.stop()
        except Exception as exc:  # closing: nothing left to report it to
            log.debug("writer %s: producer stop failed: %r", self.writer_id, exc)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a send future's exception as retrieved (the transaction reports the failure)."""
    if not future.cancelled():
        future.exception()


def _retrieve_internal_futures(producer: Any) -> None:
    """After a fatal error (fencing) aiokafka fails internal futures nobody awaits (the
    transaction waiter, batch drain waiters): retrieve them, or asyncio logs each one."""
    manager = getattr(producer, "_txn_manager", None)
    futures = [getattr(manager, "_transaction_waiter", None)]
    accumulator = getattr(producer, "_message_accumulator", None)
    batches = [b for bs in getattr(accumulator, "_batches", {}).values() for b in bs]
    batches += list(getattr(accumulator, "_pending_batches", ()))
    for batch in batches:
        futures += [getattr(batch, "future", None), getattr(batch, "_drain_waiter", None)]
    for future in futures:
        if isinstance(future, asyncio.Future) and future.done():
            _retrieve(future)
