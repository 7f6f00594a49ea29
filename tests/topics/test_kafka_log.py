"""Kafka-specific behaviour of :mod:`wakeline.topics.kafka.log` (the shared semantics are in
``test_log_conformance.py``): zombie fencing with transactions, group commit, a broker
restart under load, listener errors, and a few measured figures (printed with ``-s``)."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.structs import TopicPartition

from wakeline.testing.kafka_broker import KafkaBroker, start_broker
from wakeline.topics.kafka.log import KafkaLog
from wakeline.topics.kafka.writer import KafkaWriter
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import (
    FencedError,
    LogUnavailableError,
    OffsetCommit,
    OutRecord,
    Record,
    RecordTooLargeError,
    TopicSpec,
)

pytestmark = pytest.mark.kafka


@pytest.fixture
def log(kafka_log: KafkaLog) -> KafkaLog:
    return kafka_log


async def new_topic(log: KafkaLog, partitions: int) -> str:
    name = f"kt-{uuid.uuid4().hex[:12]}"
    await log.create_topics([TopicSpec(name, partitions)])
    return name


def key_for(partition: int, partitions: int) -> bytes:
    return next(
        k
        for k in (f"k-{i}".encode() for i in range(10_000))
        if partition_for(k, partitions) == partition
    )


async def read_all(log: KafkaLog, topic: str, partition: int) -> list[Record]:
    end = await log.end_offset(topic, partition)
    out: list[Record] = []
    offset = 0
    while offset < end:
        records = await log.read(topic, partition, offset, max_records=5000)
        if not records:
            break
        out.extend(records)
        offset = records[-1].offset + 1
    return out


# -- fencing ---------------------------------------------------------------------------------


async def test_zombie_is_fenced_and_its_records_are_never_read(log: KafkaLog) -> None:
    topic = await new_topic(log, 2)
    writer_id = f"w-{uuid.uuid4().hex[:8]}"
    a = await log.writer(writer_id, 1)
    b = await log.writer(writer_id, 1)  # fences a
    with pytest.raises(FencedError):
        await a.append(topic, [OutRecord(b"a", b"zombie")])
    with pytest.raises(FencedError):  # unusable from now on
        await a.append(topic, [OutRecord(b"a", b"zombie-again")])
    offsets = await b.append(topic, [OutRecord(b"b", b"b1"), OutRecord(b"b", b"b2")])
    assert [r.value for r in await read_all(log, topic, 1)] == [b"b1", b"b2"]
    assert [r.offset for r in await read_all(log, topic, 1)] == offsets
    await a.close()
    await b.close()


async def test_open_transaction_of_a_zombie_is_aborted_with_its_offsets(log: KafkaLog) -> None:
    """A zombie in the middle of a transaction when the new writer opens: its records (already
    on the broker) and its offset commit never become visible; later records read fine."""
    topic = await new_topic(log, 1)
    source = await new_topic(log, 1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    writer_id = f"w-{uuid.uuid4().hex[:8]}"
    a = await log.writer(writer_id, 0)
    await a.append(topic, [OutRecord(b"a", b"a1")], commit=OffsetCommit(group, source, 0, 1))
    producer = a._producer  # drive a's transaction by hand to leave it open
    await producer.begin_transaction()
    sent = await producer.send(topic, b"in-flight", key=b"a", partition=0)
    await sent  # produced (uncommitted) before the new writer appears
    await producer.send_offsets_to_transaction({TopicPartition(source, 0): 5}, group)
    b = await log.writer(writer_id, 0)  # InitProducerId aborts a's open transaction
    with pytest.raises(Exception, match=r"(?i)fenced"):
        await producer.commit_transaction()
    await b.append(topic, [OutRecord(b"b", b"b1")], commit=OffsetCommit(group, source, 0, 2))
    records = await read_all(log, topic, 0)
    assert [r.value for r in records] == [b"a1", b"b1"]
    assert records[1].offset > sent.result().offset  # the aborted record kept its offset
    assert await log.committed(group, source, 0) == 2
    await a.close()
    await b.close()


async def test_each_committed_transaction_leaves_a_gap_for_its_commit_marker(
    log: KafkaLog,
) -> None:
    """Kafka's offsets are not dense: a transaction's commit marker takes the offset after its
    records, readers never see it, and the last stable offset is past it."""
    topic = await new_topic(log, 2)
    writer = await log.writer(f"w-{uuid.uuid4().hex[:8]}", 1)
    assert await writer.append(topic, [OutRecord(b"k", b"a"), OutRecord(b"k", b"b")]) == [0, 1]
    assert await log.end_offset(topic, 1) == 3  # the commit marker is offset 2
    assert await writer.append(topic, [OutRecord(b"k", b"c")]) == [3]
    assert await log.end_offset(topic, 1) == 5
    records = await log.read(topic, 1, 0)
    assert [(r.offset, r.value) for r in records] == [(0, b"a"), (1, b"b"), (3, b"c")]
    assert [r.offset for r in await log.read(topic, 1, 2)] == [3]  # from the marker: skipped
    assert await log.read(topic, 1, 4) == []  # only a marker is left below the end
    assert await log.end_offset(topic, 0) == 0  # no marker on a partition it did not write
    await writer.close()


async def test_offsets_only_transaction_and_atomic_commit(log: KafkaLog) -> None:
    sink, source = await new_topic(log, 2), await new_topic(log, 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    writer = await log.writer(f"w-{uuid.uuid4().hex[:8]}", 0)
    assert await writer.append(sink, [], commit=OffsetCommit(group, source, 1, 3)) == []
    assert await log.committed(group, source, 1) == 3
    [offset] = await writer.append(
        sink, [OutRecord(b"k", b"v")], commit=OffsetCommit(group, source, 1, 4)
    )
    assert await log.committed(group, source, 1) == 4
    assert [(r.offset, r.value) for r in await read_all(log, sink, 0)] == [(offset, b"v")]
    await writer.close()


# -- group commit ----------------------------------------------------------------------------


async def test_concurrent_appends_are_group_committed(log: KafkaLog) -> None:
    topic, source = await new_topic(log, 2), await new_topic(log, 1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    writer = await log.writer(f"w-{uuid.uuid4().hex[:8]}", 1)
    results: dict[tuple[int, int], tuple[list[bytes], list[int]]] = {}
    commits = [0]

    async def appender(task: int) -> None:
        for call in range(4):  # 50 tasks x 4 calls = 200 appends
            values = [b"t%d-c%d-r%d" % (task, call, r) for r in range(1 + (task + call) % 3)]
            commit = None
            if task % 5 == 0:  # increasing in queue order: the last transaction has the max
                commits[0] += 1
                commit = OffsetCommit(group, source, 0, commits[0])
            records = [OutRecord(b"k", v) for v in values]
            results[(task, call)] = (values, await writer.append(topic, records, commit=commit))

    await asyncio.gather(*(appender(t) for t in range(50)))
    assert len(results) == 200
    assert writer.transactions < 100, "appends were not grouped into transactions"
    records = await read_all(log, topic, 1)
    by_offset = {r.offset: r.value for r in records}
    total = 0
    for values, offsets in results.values():
        assert offsets == list(range(offsets[0], offsets[0] + len(values)))  # one call: contiguous
        assert [by_offset[o] for o in offsets] == values
        total += len(values)
    assert len(records) == total  # nothing else landed, nothing twice
    assert len({r.value for r in records}) == total
    assert await log.committed(group, source, 0) == commits[0]
    await writer.close()


async def test_record_the_broker_rejects_fails_only_its_own_append(log: KafkaLog) -> None:
    """Below max_record_bytes but above the broker's message.max.bytes once batched: the
    group-committed transaction is retried call by call, so only that call fails."""
    topic = await new_topic(log, 1)
    writer = await log.writer(f"w-{uuid.uuid4().hex[:8]}", 0)
    near_limit = OutRecord(b"k", b"x" * (log.max_record_bytes - 8))
    calls = [writer.append(topic, [OutRecord(b"k", b"small-%d" % i)]) for i in range(20)]
    calls.insert(10, writer.append(topic, [near_limit]))
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[10], RecordTooLargeError)
    assert all(isinstance(o, list) for i, o in enumerate(outcomes) if i != 10)
    assert len(await read_all(log, topic, 0)) == 20
    assert await writer.append(topic, [OutRecord(b"k", b"after")])  # still usable
    await writer.close()


# -- consumer groups -------------------------------------------------------------------------


class FailingListener:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def on_assigned(self, partitions: frozenset[int]) -> None:
        self.calls.append("assigned")
        raise RuntimeError("boom in on_assigned")

    async def on_revoked(self, partitions: frozenset[int]) -> None:
        self.calls.append("revoked")


async def test_listener_error_is_raised_by_the_next_poll(log: KafkaLog) -> None:
    topic = await new_topic(log, 2)
    listener = FailingListener()
    consumer = log.consumer(f"g-{uuid.uuid4().hex[:8]}", topic, listener, session_timeout_s=6)
    try:
        deadline = time.monotonic() + 30
        with pytest.raises(RuntimeError, match="boom in on_assigned"):
            while time.monotonic() < deadline:
                await consumer.poll(0.1)
        assert listener.calls == ["assigned"]
    finally:
        await consumer.close()
    assert listener.calls == ["assigned", "revoked"]


class SlowListener:
    def __init__(self) -> None:
        self.ready: set[int] = set()

    async def on_assigned(self, partitions: frozenset[int]) -> None:
        await asyncio.sleep(1.0)  # e.g. a worker opening writers and catching up
        self.ready |= partitions

    async def on_revoked(self, partitions: frozenset[int]) -> None:
        self.ready -= partitions


async def test_poll_returns_records_only_after_on_assigned_returned(log: KafkaLog) -> None:
    """aiokafka runs listener calls in its own task: poll must not hand out records of a
    partition whose on_assigned is still running."""
    topic = await new_topic(log, 2)
    for p in range(2):
        await log.append(topic, [OutRecord(key_for(p, 2), b"v%d" % i) for i in range(5)])
    listener = SlowListener()
    consumer = log.consumer(f"g-{uuid.uuid4().hex[:8]}", topic, listener, session_timeout_s=6)
    got: list[Record] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < 10 and time.monotonic() < deadline:
            for record in await consumer.poll(0.05):
                assert record.partition in listener.ready
                got.append(record)
    finally:
        await consumer.close()
    assert sorted((r.partition, r.offset) for r in got) == [
        (p, o) for p in (0, 1) for o in range(5)
    ]


# -- broker restart --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker of this module only: the restart test must not disturb the session one."""
    workdir: Path = tmp_path_factory.mktemp("kafka-restart")
    broker = start_broker(workdir=workdir)
    yield broker
    if broker.how != "env":
        broker.stop()


class Reopened:
    """A fenced writer that is replaced when it becomes unusable, as a partition owner does
    (aiokafka's transactional sender can die on a connection error while the broker is down,
    aio-libs/aiokafka#1151): the call that failed has an unknown outcome, so it is not counted
    as acknowledged, and the next calls go to a new writer of the same id."""

    def __init__(self, log: KafkaLog, writer_id: str) -> None:
        self._log, self._id = log, writer_id
        self.writer: KafkaWriter | None = None
        self.replaced: list[BaseException] = []
        self._lock = asyncio.Lock()

    async def append(self, topic: str, value: bytes) -> int | None:
        """The offset of the appended record, or ``None`` if the writer failed on it."""
        writer = await self._current()
        try:
            [offset] = await writer.append(topic, [OutRecord(b"k", value)])
        except LogUnavailableError as exc:
            async with self._lock:
                if self.writer is writer:
                    self.replaced.append(exc)
                    self.writer = None
                    with contextlib.suppress(Exception):
                        await writer.close()
            return None
        return offset

    async def _current(self) -> KafkaWriter:
        async with self._lock:
            while self.writer is None:
                try:
                    self.writer = await self._log.writer(self._id, 0)
                except LogUnavailableError:
                    await asyncio.sleep(0.5)  # the broker is still down: try again
            return self.writer

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()


async def test_acknowledged_appends_survive_a_broker_restart(own_broker: KafkaBroker) -> None:
    # a restart of the jars broker can take over a minute on a slow machine: appends wait it
    # out (a writer's transaction that outlives its deadline makes it unusable, on purpose)
    log = KafkaLog(own_broker.bootstrap, retry_deadline_s=240.0)
    await log.start()
    async with log:
        topic = await new_topic(log, 2)
        writer = Reopened(log, f"w-{uuid.uuid4().hex[:8]}")
        plain_key = key_for(1, 2)
        fenced: dict[bytes, int] = {}
        plain: dict[bytes, int] = {}
        failures: list[BaseException] = []
        stop, grew = asyncio.Event(), asyncio.Event()

        async def acked_at_least(n_fenced: int, n_plain: int, timeout_s: float) -> None:
            async with asyncio.timeout(timeout_s):
                while len(fenced) < n_fenced or len(plain) < n_plain:
                    assert not failures, f"appends failed: {failures[0]!r}"
                    grew.clear()
                    await grew.wait()

        async def fenced_appender(i: int) -> None:
            n = 0
            while not stop.is_set():
                value = b"w%d-%d" % (i, n)
                n += 1
                offset = await writer.append(topic, value)
                if offset is not None:
                    fenced[value] = offset
                    grew.set()

        async def plain_appender(i: int) -> None:
            n = 0
            while not stop.is_set():
                value = b"p%d-%d" % (i, n)
                n += 1
                try:
                    [(partition, offset)] = await log.append(topic, [OutRecord(plain_key, value)])
                except LogUnavailableError as exc:
                    failures.append(exc)
                    grew.set()
                    return
                assert partition == 1
                plain[value] = offset
                grew.set()

        tasks = [asyncio.create_task(fenced_appender(i)) for i in range(8)]
        tasks += [asyncio.create_task(plain_appender(i)) for i in range(4)]
        await acked_at_least(200, 200, 60)  # both kinds of appends are flowing
        before = (len(fenced), len(plain))
        started = time.monotonic()
        await asyncio.to_thread(own_broker.restart)  # appends keep going meanwhile
        restarted = time.monotonic()
        after = (len(fenced), len(plain))
        try:
            await acked_at_least(after[0] + 200, after[1] + 200, 90)
        except TimeoutError:
            raise AssertionError("appends did not resume after the restart") from None
        stop.set()
        await asyncio.gather(*tasks)
        print(
            f"\nrestart took {restarted - started:.1f}s; acked fenced/plain before {before},"
            f" during {after}, total {(len(fenced), len(plain))}; {len(failures)} failures;"
            f" fenced writer replaced {len(writer.replaced)} times"
        )
        assert not failures
        for partition, acked in ((0, fenced), (1, plain)):
            records = await read_all(log, topic, partition)
            values = [r.value for r in records]
            assert len(values) == len(set(values)), "a record landed twice"
            at = {r.value: r.offset for r in records}
            lost = [v for v in acked if v not in at]
            assert not lost, f"{len(lost)} acknowledged appends lost, e.g. {lost[:3]}"
            assert all(at[v] == o for v, o in acked.items())
        await writer.close()


# -- figures (printed; never asserted) -------------------------------------------------------


async def test_measure_latency_and_throughput(log: KafkaLog) -> None:
    topic = await new_topic(log, 4)
    writer = await log.writer(f"w-{uuid.uuid4().hex[:8]}", 0)
    await writer.append(topic, [OutRecord(b"k", b"warm-up")])
    latencies = []
    for i in range(200):
        t0 = time.perf_counter()
        await writer.append(topic, [OutRecord(b"k", b"x" * 200 + b"%d" % i)])
        latencies.append(time.perf_counter() - t0)
    p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
    tx0 = writer.transactions
    done = 0

    async def appender(stop_at: float) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await writer.append(topic, [OutRecord(b"k", b"y" * 200)])
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(appender(t0 + 5.0) for _ in range(50)))
    elapsed = time.perf_counter() - t0
    per_txn = done / max(1, writer.transactions - tx0)
    plain = []
    for i in range(200):
        t1 = time.perf_counter()
        await log.append(topic, [OutRecord(b"k", b"p%d" % i)])
        plain.append(time.perf_counter() - t1)
    reads = []
    for i in range(100):
        t1 = time.perf_counter()
        assert await log.read(topic, 0, i * 7, max_records=10)
        reads.append(time.perf_counter() - t1)
    print(
        f"\nfenced append, 1 record, sequential: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
        f"\nfenced append, 50 concurrent appenders: {done / elapsed:.0f} records/s"
        f" ({per_txn:.1f} appends per transaction)"
        f"\nunfenced append, 1 record: p50 {_percentile(plain, 50) * 1000:.1f} ms,"
        f" p99 {_percentile(plain, 99) * 1000:.1f} ms"
        f"\nread (seek + fetch, data present): p50 {_percentile(reads, 50) * 1000:.1f} ms,"
        f" p99 {_percentile(reads, 99) * 1000:.1f} ms"
    )
    await writer.close()


def _percentile(samples: list[float], pct: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[pct - 1]
