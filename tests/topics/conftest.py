"""Fixtures shared by the log tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wakeline.testing.kafka_broker import KafkaBroker
from wakeline.topics.kafka.log import KafkaLog


@pytest.fixture
async def kafka_log(kafka_broker: KafkaBroker) -> AsyncIterator[KafkaLog]:
    """An open Kafka log on the suite's broker, closed after the test."""
    opened = await KafkaLog.open(kafka_broker.bootstrap)
    try:
        yield opened
    finally:
        await opened.close()
