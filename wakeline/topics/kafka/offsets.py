"""Group requests of the Kafka backend made outside a consumer: committed offsets of any
group, commits outside membership, and "is this member current" checks, each sent as a raw
request to the group's coordinator (looked up again on coordinator errors)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import errors as kerrors
from aiokafka.client import ConnectionGroup, CoordinationType
from aiokafka.protocol.commit import OffsetCommitRequest, OffsetFetchRequest
from aiokafka.protocol.group import HeartbeatRequest
from aiokafka.structs import TopicPartition

from wakeline.topics.kafka.errors import call_retrying, map_error
from wakeline.topics.port import FencedError

_COORDINATOR_ERRORS = (14, 15, 16)  # loading, not available, not coordinator: look it up again
_MEMBER_ERRORS = (22, 25, 27)  # ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS


class GroupOffsets:
    """Committed offsets of any group, through raw requests to its coordinator."""

    def __init__(self, client: Any, timeout_s: float) -> None:
        self._client = client  # a bootstrapped AIOKafkaClient
        self._timeout_s = timeout_s
        self._coordinators: dict[str, int] = {}

    async def fetch(self, group: str, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The committed offsets of ``tps`` (missing: never committed)."""
        by_topic: dict[str, list[int]] = {}
        for tp in tps:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        request = OffsetFetchRequest(group, list(by_topic.items()))
        response = await self._request(group, request)
        found: dict[TopicPartition, int] = {}
        for topic, results in response.topics:
            for partition, offset, _, code in results:
                if code:
                    raise map_error(kerrors.for_code(code)(), f"offsets of group {group!r}")
                if offset >= 0:
                    found[TopicPartition(topic, partition)] = offset
        return found

    async def simple_commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Commit outside group membership: accepted while the group has no active member."""
        parts = [(p, o, "") for p, o in sorted(offsets.items())]
        request = OffsetCommitRequest(group, -1, "", -1, [(topic, parts)])
        response = await self._request(group, request)
        for _, results in response.topics:
            for partition, code in results:
                if code in _MEMBER_ERRORS:
                    raise FencedError(
                        f"group {group!r} has active members: partition {partition} must be"
                        " committed by the member that holds it"
                    )
                if code:
                    raise map_error(kerrors.for_code(code)(), f"commit of group {group!r}")

    async def is_member(self, group: str, generation: int, member_id: str) -> bool:
        """Whether ``member_id`` is in ``group``'s current ``generation`` (a Heartbeat: not
        during a rebalance, not after its session expired)."""
        response = await self._request(group, HeartbeatRequest(group, generation, member_id))
        return bool(response.error_code == 0)

    async def _request(self, group: str, request: Any) -> Any:
        """Send ``request`` to the group's coordinator, retrying coordinator errors."""

        async def attempt() -> Any:
            node = self._coordinators.get(group)
            if node is None:
                node = await self._client.coordinator_lookup(CoordinationType.GROUP, group)
                self._coordinators[group] = node
            try:
                response = await self._client.send(
                    node, request, group=ConnectionGroup.COORDINATION
                )
            except Exception:
                self._coordinators.pop(group, None)
                raise
            codes = [getattr(response, "error_code", 0)]
            codes += [c for _, results in getattr(response, "topics", ()) for *_, c in results]
            for code in codes:
                if code in _COORDINATOR_ERRORS:
                    self._coordinators.pop(group, None)
                    raise kerrors.for_code(code)()
            return response

        what = f"request to the coordinator of group {group!r}"
        return await call_retrying(self._timeout_s, attempt, what)
