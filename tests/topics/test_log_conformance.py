"""Conformance suite of the log port: written against :mod:`wakeline.topics.port` only.

Every backend runs the same tests through the ``log_factory`` fixture.  To add a backend, add
a builder to ``BACKENDS`` (name -> function of the pytest request returning a
:class:`LogFactory`); e.g. a Kafka builder takes its broker from a session fixture with
``request.getfixturevalue(...)`` and marks itself with ``pytest.mark.kafka``.

Offsets: the port promises offsets that increase along a partition, not dense ones, so these
tests use the offsets the log returned and never compute one (``next = previous + 1``).  On
Kafka every committed transaction's commit marker takes an offset and aborted records keep
theirs (``test_kafka_log.py`` checks those gaps); the embedded log's offsets are dense from 0,
which ``test_embedded_log.py`` checks.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from wakeline.topics.embedded.log import EmbeddedConsumer, EmbeddedLog
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import (
    FencedError,
    GroupConsumer,
    Log,
    OffsetCommit,
    OutRecord,
    Record,
    RecordTooLargeError,
    TopicSpec,
    UnknownTopicError,
)

SESSION_S = 1.0


@dataclass(frozen=True)
class LogFactory:
    """Opens handles on one backing log (a second handle stands for another process)."""

    name: str
    open: Callable[[], AbstractAsyncContextManager[Log]]
    # stop a consumer's heartbeats, as if its process were paused
    freeze: Callable[[GroupConsumer], Awaitable[None]]
    # how long a rebalance may take on this backend
    settle_s: float = 10.0


def _embedded(request: pytest.FixtureRequest) -> LogFactory:
    data_dir: Path = request.getfixturevalue("tmp_path") / "log"

    @asynccontextmanager
    async def open_log() -> AsyncIterator[Log]:
        log = await EmbeddedLog.open(data_dir)
        try:
            yield log
        finally:
            await log.close()

    async def freeze(consumer: GroupConsumer) -> None:
        assert isinstance(consumer, EmbeddedConsumer)
        await consumer._freeze()

    return LogFactory("embedded", open_log, freeze)


def _kafka(request: pytest.FixtureRequest) -> LogFactory:
    from wakeline.testing.kafka_broker import KafkaBroker
    from wakeline.topics.kafka.log import KafkaConsumer, KafkaLog

    broker: KafkaBroker = request.getfixturevalue("kafka_broker")

    @asynccontextmanager
    async def open_log() -> AsyncIterator[Log]:
        log = await KafkaLog.open(broker.bootstrap)
        try:
            yield log
        finally:
            await log.close()

    async def freeze(consumer: GroupConsumer) -> None:
        assert isinstance(consumer, KafkaConsumer)
        await consumer._freeze()

    return LogFactory("kafka", open_log, freeze, settle_s=30.0)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], LogFactory]] = {
    "embedded": _embedded,
    "kafka": _kafka,
}
BACKEND_MARKS = {"kafka": [pytest.mark.kafka]}


@pytest.fixture(
    params=[pytest.param(name, marks=BACKEND_MARKS.get(name, [])) for name in sorted(BACKENDS)]
)
def log_factory(request: pytest.FixtureRequest) -> LogFactory:
    return BACKENDS[request.param](request)


@pytest.fixture
async def log(log_factory: LogFactory) -> AsyncIterator[Log]:
    async with log_factory.open() as opened:
        yield opened


# -- helpers ---------------------------------------------------------------------------------


async def new_topic(log: Log, partitions: int) -> str:
    name = f"conf-{uuid.uuid4().hex[:12]}"
    await log.create_topics([TopicSpec(name, partitions)])
    return name


def assert_increasing(offsets: Sequence[int]) -> None:
    """Offsets along one partition: increasing, gaps allowed (none below 0)."""
    assert all(o >= 0 for o in offsets), offsets
    assert all(a < b for a, b in itertools.pairwise(offsets)), offsets


def key_for(partition: int, partitions: int, salt: str = "k") -> bytes:
    """A key that the murmur2 partitioner puts on ``partition``."""
    for i in range(10_000):
        key = f"{salt}-{i}".encode()
        if partition_for(key, partitions) == partition:
            return key
    raise AssertionError("no key found")


class Listener:
    """Records assignment callbacks into a timeline shared by several members."""

    def __init__(self, name: str, timeline: list[tuple[str, str, frozenset[int]]]) -> None:
        self.name = name
        self.timeline = timeline

    async def on_assigned(self, partitions: frozenset[int]) -> None:
        self.timeline.append((self.name, "assigned", partitions))

    async def on_revoked(self, partitions: frozenset[int]) -> None:
        self.timeline.append((self.name, "revoked", partitions))

    def held(self) -> frozenset[int]:
        """The partitions the callbacks say this member holds."""
        held: set[int] = set()
        for name, kind, partitions in self.timeline:
            if name == self.name:
                held = held | partitions if kind == "assigned" else held - partitions
        return frozenset(held)


async def settle(
    consumers: Sequence[GroupConsumer],
    done: Callable[[], bool],
    timeout_s: float,
    records: dict[str, list[Record]] | None = None,
) -> None:
    """Poll every consumer in turn until ``done()``; polled records go to ``records``."""
    deadline = time.monotonic() + timeout_s
    while True:
        for consumer in consumers:
            polled = await consumer.poll(0.05)
            if records is not None:
                records.setdefault(consumer.member_id, []).extend(polled)
        if done():
            return
        if time.monotonic() > deadline:
            state = {c.member_id: sorted(c.assignment()) for c in consumers}
            raise AssertionError(f"group did not settle in {timeout_s}s: {state}")


# -- topics and records ----------------------------------------------------------------------


async def test_create_topics_is_idempotent_and_keeps_partition_count(log: Log) -> None:
    topic = await new_topic(log, 3)
    assert await log.partition_count(topic) == 3
    await log.create_topics([TopicSpec(topic, 3)])
    await log.create_topics([TopicSpec(topic, 5)])  # mismatch: left as it is, no error
    assert await log.partition_count(topic) == 3


async def test_unknown_topic_raises(log: Log) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(UnknownTopicError):
        await log.append(missing, [OutRecord(b"k", b"v")])
    with pytest.raises(UnknownTopicError):
        await log.read(missing, 0, 0)
    with pytest.raises(UnknownTopicError):
        await log.partition_count(missing)
    with pytest.raises(UnknownTopicError):
        await log.end_offset(missing, 0)


async def test_keyed_append_lands_on_murmur2_partition_in_order(log: Log) -> None:
    n = 4
    topic = await new_topic(log, n)
    keys = [f"run-{i}".encode() for i in range(12)]
    batch = [OutRecord(key, b"%s:%d" % (key, seq)) for seq in range(5) for key in keys]
    placed = await log.append(topic, batch)
    assert [p for p, _ in placed] == [partition_for(r.key or b"", n) for r in batch]
    for partition in range(n):
        offsets = [o for p, o in placed if p == partition]
        assert_increasing(offsets)
        read = await log.read(topic, partition, 0)
        assert [r.offset for r in read] == offsets
        assert [(r.key, r.value) for r in read] == [
            (r.key, r.value) for r, (p, _) in zip(batch, placed, strict=True) if p == partition
        ]
        assert all(r.topic == topic and r.partition == partition for r in read)
        end = await log.end_offset(topic, partition)
        assert end > offsets[-1] if offsets else end == 0


async def test_offsets_increase_and_read_from_offset(log: Log) -> None:
    topic = await new_topic(log, 2)
    key = key_for(1, 2)
    placed: list[tuple[int, int]] = []
    for i in range(4):  # several appends, several records each
        placed += await log.append(topic, [OutRecord(key, b"v%d" % (i * 3 + j)) for j in range(3)])
    assert [p for p, _ in placed] == [1] * 12
    offsets = [o for _, o in placed]
    assert_increasing(offsets)
    end = await log.end_offset(topic, 1)
    assert end > offsets[-1]
    assert await log.end_offset(topic, 0) == 0
    window = await log.read(topic, 1, offsets[3], max_records=4)
    assert [(r.offset, r.value) for r in window] == [(offsets[i], b"v%d" % i) for i in range(3, 7)]
    assert await log.read(topic, 1, end) == []
    assert all(r.timestamp_ms > 0 for r in window)


async def test_read_waits_and_is_woken_by_a_later_append(log: Log) -> None:
    topic = await new_topic(log, 1)
    started = time.monotonic()
    assert await log.read(topic, 0, 0, timeout_s=0.2) == []
    assert time.monotonic() - started >= 0.15
    reader = asyncio.create_task(log.read(topic, 0, 0, timeout_s=10.0))
    await asyncio.sleep(0.2)
    assert not reader.done()
    appended = time.monotonic()
    await log.append(topic, [OutRecord(b"k", b"late")])
    records = await asyncio.wait_for(reader, 5.0)
    assert [r.value for r in records] == [b"late"]
    assert time.monotonic() - appended < 2.0


async def test_read_is_woken_by_an_append_through_another_handle(
    log_factory: LogFactory, log: Log
) -> None:
    topic = await new_topic(log, 1)
    async with log_factory.open() as other:
        reader = asyncio.create_task(log.read(topic, 0, 0, timeout_s=10.0))
        await asyncio.sleep(0.1)
        await other.append(topic, [OutRecord(b"k", b"from-elsewhere")])
        records = await asyncio.wait_for(reader, 5.0)
    assert [r.value for r in records] == [b"from-elsewhere"]


async def test_headers_round_trip(log: Log) -> None:
    topic = await new_topic(log, 1)
    headers = (("type", b"event"), ("trace", b""), ("type", b"dup"), ("ünï", b"\x00\xff"))
    await log.append(topic, [OutRecord(b"k", b"v", headers), OutRecord(b"k", b"", ())])
    first, second = await log.read(topic, 0, 0)
    assert first.headers == headers
    assert first.header("type") == b"event"
    assert first.header("missing") is None
    assert second.headers == ()
    assert second.value == b""


async def test_too_large_record_raises_and_writes_nothing(log: Log) -> None:
    topic = await new_topic(log, 1)
    with pytest.raises(RecordTooLargeError):
        await log.append(topic, [OutRecord(b"k", b"x" * (2 * 1024 * 1024))])
    assert await log.end_offset(topic, 0) == 0
    fits = b"x" * (512 * 1024)  # well below the limit
    [(_, offset)] = await log.append(topic, [OutRecord(b"k", fits)])
    assert [(r.offset, r.value) for r in await log.read(topic, 0, 0)] == [(offset, fits)]
    assert await log.end_offset(topic, 0) > offset


# -- consumer groups -------------------------------------------------------------------------


async def test_committed_is_none_until_committed(log: Log) -> None:
    topic = await new_topic(log, 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    assert await log.committed(group, topic, 0) is None
    consumer = log.consumer(group, topic, Listener("a", []), session_timeout_s=SESSION_S)
    try:
        await consumer.commit({0: 5, 1: 2})
        assert await log.committed(group, topic, 0) == 5
        assert await log.committed(group, topic, 1) == 2
        await consumer.commit({0: 7})
        assert await log.committed(group, topic, 0) == 7
    finally:
        await consumer.close()


async def test_single_member_gets_every_partition_and_reads_them(
    log_factory: LogFactory, log: Log
) -> None:
    topic = await new_topic(log, 3)
    for p in range(3):
        await log.append(topic, [OutRecord(key_for(p, 3), b"p%d-%d" % (p, i)) for i in range(4)])
    timeline: list[tuple[str, str, frozenset[int]]] = []
    listener = Listener("a", timeline)
    consumer = log.consumer(
        f"g-{uuid.uuid4().hex[:8]}", topic, listener, session_timeout_s=SESSION_S
    )
    polled: dict[str, list[Record]] = {}
    try:
        await settle(
            [consumer],
            lambda: len(polled.get(consumer.member_id, [])) == 12,
            log_factory.settle_s,
            polled,
        )
        assert consumer.assignment() == frozenset(range(3))
        assert listener.held() == consumer.assignment()
        got = polled[consumer.member_id]
        for p in range(3):
            assert [r.value for r in got if r.partition == p] == [
                b"p%d-%d" % (p, i) for i in range(4)
            ]
        on_1 = [r.offset for r in got if r.partition == 1]
        consumer.seek(1, on_1[2])
        await settle(
            [consumer], lambda: len(polled[consumer.member_id]) == 14, log_factory.settle_s, polled
        )
        assert [(r.partition, r.offset) for r in polled[consumer.member_id][12:]] == [
            (1, on_1[2]),
            (1, on_1[3]),
        ]
    finally:
        await consumer.close()
    assert listener.held() == frozenset()


async def test_second_member_splits_partitions(log_factory: LogFactory, log: Log) -> None:
    topic = await new_topic(log, 4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    timeline: list[tuple[str, str, frozenset[int]]] = []
    la, lb = Listener("a", timeline), Listener("b", timeline)
    a = log.consumer(group, topic, la, session_timeout_s=SESSION_S)
    b = log.consumer(group, topic, lb, session_timeout_s=SESSION_S)
    try:
        await settle([a], lambda: a.assignment() == frozenset(range(4)), log_factory.settle_s)

        def split() -> bool:
            mine, theirs = a.assignment(), b.assignment()
            return bool(mine and theirs) and not mine & theirs and mine | theirs == set(range(4))

        await settle([a, b], split, log_factory.settle_s)
        assert la.held() == a.assignment() and lb.held() == b.assignment()
        if log.system == "kafka":  # eager rebalances: revoked when the new assignment arrives
            moved = [k for n, k, ps in timeline if n == "a" and ps & b.assignment()]
            assert moved == ["assigned", "revoked"], timeline  # kept ones were never revoked
        for p in b.assignment() if log.system != "kafka" else ():
            revoked_at = next(
                i for i, (n, k, ps) in enumerate(timeline) if (n, k) == ("a", "revoked") and p in ps
            )
            assigned_at = next(
                i
                for i, (n, k, ps) in enumerate(timeline)
                if (n, k) == ("b", "assigned") and p in ps
            )
            assert revoked_at < assigned_at, timeline

        # a graceful leave hands b's partitions back to a
        b_had = b.assignment()
        await b.close()
        assert lb.held() == frozenset()
        assert timeline[-1] == ("b", "revoked", b_had)
        await settle([a], lambda: a.assignment() == frozenset(range(4)), log_factory.settle_s)
        assert la.held() == frozenset(range(4))
    finally:
        await a.close()
        await b.close()


async def test_a_fourth_member_takes_its_share_and_no_more(
    log_factory: LogFactory, log: Log
) -> None:
    """12 partitions over three members, then a fourth joins: every member ends with three,
    each partition held once."""
    topic = await new_topic(log, 12)
    group = f"g-{uuid.uuid4().hex[:8]}"
    timeline: list[tuple[str, str, frozenset[int]]] = []
    names = "abcd"
    members = [
        log.consumer(group, topic, Listener(n, timeline), session_timeout_s=SESSION_S)
        for n in names[:3]
    ]
    try:

        def balanced(n: int) -> Callable[[], bool]:
            def done() -> bool:
                held = [m.assignment() for m in members]
                union = frozenset().union(*held)
                return all(len(h) == 12 // n for h in held) and union == frozenset(range(12))

            return done

        await settle(members, balanced(3), log_factory.settle_s * 2)
        members.append(
            log.consumer(group, topic, Listener("d", timeline), session_timeout_s=SESSION_S)
        )
        await settle(members, balanced(4), log_factory.settle_s * 2)
    finally:
        for m in members:
            await m.close()


async def test_member_that_stops_polling_keeps_its_partitions(
    log_factory: LogFactory, log: Log
) -> None:
    topic = await new_topic(log, 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    a = log.consumer(group, topic, Listener("a", []), session_timeout_s=SESSION_S)
    b = log.consumer(group, topic, Listener("b", []), session_timeout_s=SESSION_S)
    try:
        await settle([a], lambda: a.assignment() == frozenset(range(2)), log_factory.settle_s)
        await asyncio.sleep(2.5 * SESSION_S)  # a does not poll; its heartbeats keep it alive
        await settle([b], lambda: bool(b.assignment()), log_factory.settle_s)
        await asyncio.sleep(1.5 * SESSION_S)
        await b.poll(0.05)
        assert b.assignment() != frozenset(range(2))  # a was not expired
    finally:
        await a.close()
        await b.close()


async def test_expired_member_loses_its_partitions(log_factory: LogFactory, log: Log) -> None:
    topic = await new_topic(log, 3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    a = log.consumer(group, topic, Listener("a", []), session_timeout_s=SESSION_S)
    lb = Listener("b", [])
    b = log.consumer(group, topic, lb, session_timeout_s=SESSION_S)
    try:
        await settle([a], lambda: a.assignment() == frozenset(range(3)), log_factory.settle_s)
        await log_factory.freeze(a)  # a's process is paused: no heartbeat, no poll
        started = time.monotonic()
        await settle([b], lambda: b.assignment() == frozenset(range(3)), log_factory.settle_s)
        assert time.monotonic() - started >= SESSION_S * 0.5
        assert lb.held() == frozenset(range(3))
    finally:
        await b.close()
        await a.close()


async def test_new_member_resumes_from_the_committed_offset(
    log_factory: LogFactory, log: Log
) -> None:
    topic = await new_topic(log, 1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    placed = await log.append(topic, [OutRecord(b"k", b"v%d" % i) for i in range(10)])
    offsets = [o for _, o in placed]
    a = log.consumer(group, topic, Listener("a", []), session_timeout_s=SESSION_S)
    polled: dict[str, list[Record]] = {}
    try:
        await settle(
            [a], lambda: len(polled.get(a.member_id, [])) >= 6, log_factory.settle_s, polled
        )
        await a.commit({0: offsets[6]})
    finally:
        await a.close()
    assert await log.committed(group, topic, 0) == offsets[6]
    b = log.consumer(group, topic, Listener("b", []), session_timeout_s=SESSION_S)
    try:
        await settle(
            [b], lambda: len(polled.get(b.member_id, [])) >= 4, log_factory.settle_s, polled
        )
        assert [r.offset for r in polled[b.member_id]] == offsets[6:]
    finally:
        await b.close()


# -- fenced writers --------------------------------------------------------------------------


async def test_newer_writer_fences_the_older_one(log: Log) -> None:
    topic = await new_topic(log, 2)
    writer_id = f"w-{uuid.uuid4().hex[:8]}"
    first = await log.writer(writer_id, 1)
    assert first.partition == 1
    offsets = await first.append(topic, [OutRecord(b"a", b"1"), OutRecord(b"b", b"2")])
    assert len(offsets) == 2
    assert_increasing(offsets)
    end = await log.end_offset(topic, 1)
    assert end > offsets[-1]
    second = await log.writer(writer_id, 1)
    with pytest.raises(FencedError):
        await first.append(topic, [OutRecord(b"a", b"zombie")])
    assert await log.end_offset(topic, 1) == end  # nothing of the zombie landed
    [third] = await second.append(topic, [OutRecord(b"c", b"3")])
    assert third >= end
    read = await log.read(topic, 1, 0)
    assert [(r.offset, r.value) for r in read] == list(
        zip([*offsets, third], [b"1", b"2", b"3"], strict=True)
    )
    assert await log.end_offset(topic, 0) == 0  # a writer writes its own partition only
    await first.close()
    await second.close()


async def test_append_with_commit_is_atomic(log: Log) -> None:
    source = await new_topic(log, 2)
    sink = await new_topic(log, 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    writer_id = f"w-{uuid.uuid4().hex[:8]}"
    writer = await log.writer(writer_id, 0)
    [offset] = await writer.append(
        sink, [OutRecord(b"k", b"out")], commit=OffsetCommit(group, source, 0, 7)
    )
    assert await log.committed(group, source, 0) == 7
    end = await log.end_offset(sink, 0)
    assert end > offset
    newer = await log.writer(writer_id, 0)
    with pytest.raises(FencedError):
        await writer.append(
            sink, [OutRecord(b"k", b"lost")], commit=OffsetCommit(group, source, 0, 9)
        )
    assert await log.committed(group, source, 0) == 7
    assert await log.end_offset(sink, 0) == end
    assert [(r.offset, r.value) for r in await log.read(sink, 0, 0)] == [(offset, b"out")]
    await newer.append(sink, [], commit=OffsetCommit(group, source, 0, 8))
    assert await log.committed(group, source, 0) == 8
    await newer.close()


async def test_an_append_committing_a_negative_offset_is_refused_and_writes_nothing(
    log: Log,
) -> None:
    source, sink = await new_topic(log, 1), await new_topic(log, 1)
    writer = await log.writer(f"w-{uuid.uuid4().hex[:8]}", 0)
    with pytest.raises(ValueError, match="offsets must not be negative"):
        await writer.append(sink, [OutRecord(b"k", b"v")], commit=OffsetCommit("g", source, 0, -1))
    assert await log.read(sink, 0, 0) == []
    assert await log.committed("g", source, 0) is None
    await writer.close()
