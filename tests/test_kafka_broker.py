"""The suite's own Kafka broker (wakeline.testing.kafka_broker) works with aiokafka."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from wakeline.testing.kafka_broker import KafkaBroker, start_broker

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    b = start_broker()
    print(f"Kafka broker: how={b.how} bootstrap={b.bootstrap} ({b.note})")
    yield b
    if b.how != "env":
        b.stop()


async def _create_topic(bootstrap: str, partitions: int = 3) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
        assert name in await admin.list_topics()
    finally:
        await admin.close()
    return name


async def _produce(bootstrap: str, topic: str, n: int, prefix: str = "v") -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(topic, f"{prefix}{i}".encode(), key=f"k{i}".encode())
    finally:
        await producer.stop()


async def _read_all(
    bootstrap: str, topic: str, n: int, *, group: str | None = None, commit: bool = False
) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        async with asyncio.timeout(30):
            while len(values) < n:
                batch = await consumer.getmany(timeout_ms=500)
                values += [m.value for ms in batch.values() for m in ms if m.value is not None]
        extra = await consumer.getmany(timeout_ms=300)  # nothing beyond the expected records
        assert not any(extra.values()), extra
        if commit:
            await consumer.commit()
        return values
    finally:
        await consumer.stop()


def test_admin_idempotent_produce_and_group_consume(broker: KafkaBroker) -> None:
    async def go() -> None:
        topic = await _create_topic(broker.bootstrap)
        await _produce(broker.bootstrap, topic, 30)
        group = f"g-{uuid.uuid4().hex[:8]}"
        values = await _read_all(broker.bootstrap, topic, 30, group=group, commit=True)
        assert sorted(values) == sorted(f"v{i}".encode() for i in range(30))
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        assert {tp.partition for tp in offsets} == {0, 1, 2}
        assert sum(meta.offset for meta in offsets.values()) == 30

    asyncio.run(go())


def test_transactions_commit_abort_and_offsets(broker: KafkaBroker) -> None:
    async def go() -> None:
        src = await _create_topic(broker.bootstrap)
        dst = await _create_topic(broker.bootstrap)
        await _produce(broker.bootstrap, src, 3, prefix="in")
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}"
        )
        await producer.start()  # InitProducerId
        try:
            async with producer.transaction():
                for i in range(3):
                    await producer.send(dst, f"ok{i}".encode(), key=b"k")
                await producer.send_offsets_to_transaction(
                    {TopicPartition(src, p): 1 for p in range(3)}, "tx-group"
                )
            with pytest.raises(RuntimeError, match="abort me"):
                async with producer.transaction():
                    await producer.send(dst, b"aborted", key=b"k")
                    raise RuntimeError("abort me")
        finally:
            await producer.stop()
        assert sorted(await _read_all(broker.bootstrap, dst, 3)) == [b"ok0", b"ok1", b"ok2"]
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets("tx-group")
        finally:
            await admin.close()
        assert {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == src} == {
            0: 1,
            1: 1,
            2: 1,
        }

    asyncio.run(go())


def test_restart_and_kill_keep_data(broker: KafkaBroker) -> None:
    if broker.how != "jars":
        pytest.skip(f"restart()/kill() need the jars broker; this one is how={broker.how}")
    topic = asyncio.run(_create_topic(broker.bootstrap))
    asyncio.run(_produce(broker.bootstrap, topic, 10, prefix="a"))
    broker.restart()  # SIGTERM, same port and data dir
    asyncio.run(_produce(broker.bootstrap, topic, 10, prefix="b"))
    broker.kill()  # SIGKILL: acked records are in the page cache, so they survive
    broker.restart()
    values = asyncio.run(_read_all(broker.bootstrap, topic, 20, group="after-restart"))
    expected = [f"{p}{i}".encode() for p in "ab" for i in range(10)]
    assert sorted(values) == sorted(expected)
