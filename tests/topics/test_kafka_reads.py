"""Reads on the Kafka backend: read-your-writes without a wait in the writer, and the pool of
read consumers under many concurrent reads of one partition."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.producer import sender as aiokafka_sender

from wakeline.topics.kafka.log import KafkaLog
from wakeline.topics.kafka.writer import CONCURRENT_TRANSACTIONS_BACKOFF_S
from wakeline.topics.port import OffsetCommit, OutRecord, TopicSpec

pytestmark = pytest.mark.kafka


@pytest.fixture
def log(kafka_log: KafkaLog) -> KafkaLog:
    return kafka_log


async def new_topic(log: KafkaLog, partitions: int = 1) -> str:
    name = f"kr-{uuid.uuid4().hex[:12]}"
    await log.create_topics([TopicSpec(name, partitions)])
    return name


async def test_an_append_returns_before_its_markers_and_a_read_still_sees_it(
    log: KafkaLog,
) -> None:
    topic, source = await new_topic(log), await new_topic(log)
    group = f"g-{uuid.uuid4().hex[:8]}"
    writer = await log.writer(f"w-{uuid.uuid4().hex[:8]}", 0)
    for n in range(20):  # each transaction right after the previous one's EndTxn
        commit = OffsetCommit(group, source, 0, n + 1)
        [offset] = await writer.append(topic, [OutRecord(b"k", b"v%d" % n)], commit=commit)
        # the writer only noted what it committed; this process's reads wait for it
        assert log.visibility.pending >= 1
        assert await log.end_offset(topic, 0) > offset
        assert await log.committed(group, source, 0) == n + 1
        [record] = await log.read(topic, 0, offset)
        assert record.value == b"v%d" % n
    assert log.visibility.pending == 0  # everything noted was seen and forgotten
    await writer.close()


async def test_opening_a_writer_shortens_the_concurrent_transactions_backoff(
    log: KafkaLog,
) -> None:
    # pinned: an aiokafka release without this module constant fails here, not silently
    assert hasattr(aiokafka_sender, "BACKOFF_OVERRIDE")
    writer = await log.writer(f"w-{uuid.uuid4().hex[:8]}", 0)
    assert aiokafka_sender.BACKOFF_OVERRIDE <= CONCURRENT_TRANSACTIONS_BACKOFF_S
    await writer.close()


async def test_concurrent_reads_of_one_partition_share_two_readers(log: KafkaLog) -> None:
    topic = await new_topic(log)
    offsets = [
        p for _, p in await log.append(topic, [OutRecord(b"k", b"%d" % i) for i in range(50)])
    ]
    before = log.readers_opened
    reads = [log.read(topic, 0, offsets[i % 50], max_records=1) for i in range(40)]
    results = await asyncio.gather(*reads)
    assert [r[0].value for r in results] == [b"%d" % (i % 50) for i in range(40)]
    assert log.readers_opened - before <= 2


async def test_a_waiting_read_does_not_hold_up_reads_of_what_is_there(log: KafkaLog) -> None:
    topic = await new_topic(log)
    [(_, offset)] = await log.append(topic, [OutRecord(b"k", b"there")])
    # two reads wait at the end for records that do not come: they take readers of their own
    waiting = [asyncio.create_task(log.read(topic, 0, offset + 1, timeout_s=30)) for _ in range(2)]
    await asyncio.sleep(0)
    [record] = await asyncio.wait_for(log.read(topic, 0, offset), 10)
    assert record.value == b"there"
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
