"""A Kafka read never hangs on the consumer: a position that is never re-established (aiokafka
waits for a position being reset without a bound) fails the read with LogUnavailableError at
its deadline, which an owner treats as a retriable log error.  A double at the aiokafka seam."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.structs import TopicPartition

from wakeline.topics.kafka.reader import Reader
from wakeline.topics.port import LogUnavailableError

TP = TopicPartition("events", 0)


class NoPosition:
    """A consumer whose partition has records below its last stable offset that never come,
    and whose position is being reset for ever."""

    def __init__(self) -> None:
        self.paused = False

    def seek(self, tp: TopicPartition, offset: int) -> None: ...

    def pause(self, tp: TopicPartition) -> None:
        self.paused = True

    def resume(self, tp: TopicPartition) -> None:
        self.paused = False

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 10 for tp in tps}

    async def getmany(self, tp: TopicPartition, **kwargs: Any) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0)
        return {}

    def last_stable_offset(self, tp: TopicPartition) -> int:
        return 10

    async def position(self, tp: TopicPartition) -> int:
        await asyncio.Event().wait()  # being reset, never done
        raise AssertionError("unreachable")


async def test_a_read_whose_position_never_comes_back_fails_at_its_deadline() -> None:
    consumer = NoPosition()
    reader = Reader(consumer, TP, 5)
    with pytest.raises(LogUnavailableError, match="no fetch response"):
        await asyncio.wait_for(reader.read(5, 100, timeout_s=0, wait_s=0.2), 10)
    assert consumer.paused, "an idle reader is paused again"
    assert reader.position == -1, "its position is unknown: the next read seeks"


async def test_a_waiting_read_that_times_out_does_not_wait_for_the_position() -> None:
    reader = Reader(NoPosition(), TP, 5)
    assert await asyncio.wait_for(reader.read(5, 100, timeout_s=0.1, wait_s=30), 10) == []
    assert reader.position == -1
