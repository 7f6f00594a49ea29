"""A Kafka member whose session expired (a paused process) rejoins as a new member: the
records of its new assignment reach the owners its listener creates, none is lost.

The Kafka CLI soak once lost five StartRun commands this way: the woken worker's consumer
fetched the new assignment from the committed offsets while ``on_assigned`` was still waiting
for its own commits to become visible; ``poll`` handed the records to the old, fenced owners
(which drop what they are given) and the new owners started after them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable

import pytest
from aiokafka.structs import TopicPartition
from listeners import CallLog

from wakeline.topics.kafka.groups import KafkaConsumer
from wakeline.topics.kafka.log import KafkaLog
from wakeline.topics.port import OutRecord, Record, TopicSpec

pytestmark = pytest.mark.kafka

SESSION_S = 1.0


@pytest.fixture
def log(kafka_log: KafkaLog) -> KafkaLog:
    return kafka_log


class HeldAnnouncement:
    """Holds the consumer's announcement of a new assignment (its wait for visibility) until
    aiokafka has fetched records of it and two more polls ran: the window of the old bug."""

    def __init__(self, log: KafkaLog, consumer: KafkaConsumer, tp: TopicPartition) -> None:
        self._real = log.visibility.settle
        self._consumer = consumer
        self._tp = tp
        self._announcing = False
        self._polls_since_fetch = 0
        self._release = asyncio.Event()
        self.held = 0

    def polled(self) -> None:
        """Called by the test after each poll."""
        inner = self._consumer._consumer  # the aiokafka consumer: has it fetched tp yet?
        if self._announcing and inner.highwater(self._tp) is not None:
            self._polls_since_fetch += 1
            if self._polls_since_fetch >= 2:
                self._release.set()

    async def settle(self, tps: Iterable[TopicPartition], group: str | None = None) -> None:
        chosen = list(tps)
        self._announcing = True
        await asyncio.wait_for(self._release.wait(), 10)
        self.held += 1
        await self._real(chosen, group)


async def poll_until(
    consumer: KafkaConsumer, done: Callable[[], bool], timeout_s: float
) -> list[Record]:
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        got += await consumer.poll(0.05)
    return got


async def test_a_member_rejoining_after_its_session_expired_loses_no_record(
    log: KafkaLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"kr-{uuid.uuid4().hex[:12]}"
    await log.create_topics([TopicSpec(topic, 1)])
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = await log.append(topic, [OutRecord(b"k", b"before %d" % i) for i in range(3)])
    timeline = CallLog()
    a = log.consumer(group, topic, timeline, session_timeout_s=SESSION_S)
    assert isinstance(a, KafkaConsumer)
    try:
        got: list[Record] = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            got += await a.poll(0.05)
        assert [r.offset for r in got] == [o for _, o in first]
        await a.commit({0: got[-1].offset + 1})

        await a._freeze()  # paused: its session expires, another member takes the partition
        b = log.consumer(group, topic, CallLog(), session_timeout_s=SESSION_S)
        try:
            await poll_until(b, lambda: b.assignment() == frozenset({0}), 30)
            assert b.assignment() == frozenset({0})
        finally:
            await b.close()  # it read, committed nothing and left
        later = [o for _, o in await log.append(topic, [OutRecord(b"k", b"after")] * 5)]

        held = HeldAnnouncement(log, a, TopicPartition(topic, 0))
        monkeypatch.setattr(log.visibility, "settle", held.settle)
        await a._thaw()  # woken up: the heartbeat fails, it rejoins as a new member
        # Until then it still fetches as the old member (a zombie: its owners would be
        # fenced and drop what they get); what counts is what it reads once rejoined.
        announced: list[Record] = []
        deadline = time.monotonic() + 30
        while len(announced) < len(later) and time.monotonic() < deadline:
            polled = await a.poll(0.05)
            held.polled()
            if timeline.assigned() == 2:
                announced += polled
        assert held.held >= 1, "the announcement was never held: the test proved nothing"
        assert timeline.calls[-2:] == [("revoked", frozenset({0})), ("assigned", frozenset({0}))]
        assert [r.offset for r in announced] == later, "records handed to the revoked owners"
    finally:
        await a.close()
