"""Topics of the Kafka backend: creation through the admin client and partition counts.

``create`` creates missing topics only (an existing topic keeps its partition count), then
waits until the metadata shows every new partition with a leader.  Partition counts come from
metadata and are cached (a missing topic raises :class:`UnknownTopicError`; auto topic
creation is never relied on).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiokafka import errors as kerrors
from aiokafka.admin import NewTopic

from wakeline.topics.kafka.errors import call_retrying, map_error
from wakeline.topics.port import LogUnavailableError, TopicSpec, UnknownTopicError

_T = TypeVar("_T")


class TopicAdmin:
    """Topic creation and partition counts over a started ``AIOKafkaAdminClient``."""

    def __init__(self, timeout_s: float) -> None:
        self.client: Any = None  # set once started
        self._timeout_s = timeout_s
        self._partitions: dict[str, int] = {}

    async def create(self, specs: Sequence[TopicSpec]) -> None:
        """Create the missing topics of ``specs`` (already checked) and wait for leaders."""
        if not specs:
            return
        new = [
            NewTopic(s.name, s.partitions, s.replication, topic_configs=dict(s.config))
            for s in specs
        ]
        response = await self._retrying(lambda: self.client.create_topics(new), "create_topics")
        for name, code, *message in response.topic_errors:
            if code not in (0, kerrors.TopicAlreadyExistsError.errno):
                raise map_error(kerrors.for_code(code)(name, *message), f"creating topic {name!r}")
        await self._await_topics([s.name for s in specs])

    async def partition_count(self, topic: str) -> int:
        if topic not in self._partitions and topic not in await self._describe([topic]):
            await self._await_topics([topic])  # exists, but a partition has no leader yet
        return self._partitions[topic]

    async def check_partition(self, topic: str, partition: int) -> None:
        if not 0 <= partition < await self.partition_count(topic):
            raise UnknownTopicError(f"topic {topic!r} has no partition {partition}")

    async def _describe(self, topics: list[str]) -> dict[str, int]:
        """Partition counts from metadata; only topics whose partitions all have leaders."""
        found = await self._retrying(lambda: self.client.describe_topics(topics), "describe_topics")
        counts: dict[str, int] = {}
        for meta in found:
            name, code, parts = meta["topic"], meta["error_code"], meta["partitions"]
            if code == kerrors.UnknownTopicOrPartitionError.errno:
                raise UnknownTopicError(f"topic {name!r} does not exist")
            if code == 0 and parts and all(p["leader"] >= 0 for p in parts):
                counts[name] = self._partitions[name] = len(parts)
        return counts

    async def _await_topics(self, topics: list[str]) -> None:
        deadline = time.monotonic() + self._timeout_s
        missing = list(dict.fromkeys(topics))
        while True:
            with contextlib.suppress(UnknownTopicError):
                missing = [t for t in missing if t not in await self._describe(missing)]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise LogUnavailableError(f"topics {missing} have no leaders yet")
            await asyncio.sleep(0.05)

    async def _retrying(self, op: Callable[[], Awaitable[_T]], what: str) -> _T:
        return await call_retrying(self._timeout_s, op, what)
