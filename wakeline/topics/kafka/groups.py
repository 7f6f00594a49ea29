"""Consumer groups of the Kafka backend: an ``AIOKafkaConsumer`` per member.

The consumer subscribes to its topic with ``enable_auto_commit=False``,
``isolation_level="read_committed"`` and ``auto_offset_reset="earliest"``; it starts (joins
the group) in the background at its first :meth:`KafkaConsumer.poll`.  Heartbeats and
rebalances run in aiokafka's background tasks, so a member that stops polling keeps its
partitions until its session times out (or ``max_poll_interval_s`` passes without a poll).

Rebalances are *eager* (aiokafka has no cooperative protocol): at every rebalance aiokafka
revokes everything a member holds before it rejoins.  The adapter turns that into the port's
incremental calls: when the new assignment arrives, ``listener.on_revoked(gone)`` for the
partitions that left and ``listener.on_assigned(added)`` for the new ones; a partition the
member keeps is neither, so its runs (and their calls in flight) go on.  "Keeps" means within
one membership: a member whose session expired (a paused process, a missed rebalance) rejoins
under a new broker member id, and other members may have owned its partitions in the
generations it missed, so everything it held is revoked and its new assignment is all added
-- the listener reopens those partitions from the log instead of trusting what it had.  The price: a
partition that moves is revoked on its old member only when that member gets its new
assignment, about when the new owner gets it, so for a moment both may act on it -- the new
owner's fenced writer makes the old one's appends fail (``FencedError``), so nothing the old
one does after that lands.  Listener calls of one consumer never overlap (a lock).

With ``instance_id`` the member is static (``group.instance.id``): it gets its partitions
back without a rebalance when it rejoins within the session timeout, and it does not leave
the group when it closes (aiokafka sends no LeaveGroup for static members), so its partitions
move only after its session timed out.  aiokafka catches and only logs exceptions of
rebalance callbacks: the adapter keeps the first one and the next :meth:`poll` (or
:meth:`close`) raises it.  Listener calls run in aiokafka's background task, so :meth:`poll`
waits for a call in progress before it returns records (like the embedded backend, whose
poll runs them), and records of a partition not announced by ``on_assigned`` yet are not
returned (the consumer seeks back to them instead).  Nor is any record while a new assignment
is being announced: aiokafka starts fetching it (from the committed offsets) before the
listener has heard of it, and a member that rejoined after its session expired still lists
its old partitions -- their records must reach the owners ``on_assigned`` creates, not the
old ones it is about to revoke.

:meth:`commit` of partitions this member holds is a normal group commit (rejected with
:class:`FencedError` if the group rebalanced meanwhile).  Other partitions (or a consumer that
has not joined) are committed as a "simple" commit, which the broker accepts only while the
group has no active member (else :class:`FencedError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import errors as kerrors
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.client import ConnectionGroup, CoordinationType
from aiokafka.protocol.commit import OffsetCommitRequest, OffsetFetchRequest
from aiokafka.structs import TopicPartition

from wakeline.topics import contract
from wakeline.topics.hosting import HostingSource
from wakeline.topics.kafka.errors import call_retrying, map_error
from wakeline.topics.kafka.hosting import Announcer
from wakeline.topics.port import AssignmentListener, FencedError, Record

if TYPE_CHECKING:
    from wakeline.topics.kafka.log import KafkaLog

log = logging.getLogger(__name__)

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
            codes += [c for _, results in response.topics for *_, c in results]
            for code in codes:
                if code in _COORDINATOR_ERRORS:
                    self._coordinators.pop(group, None)
                    raise kerrors.for_code(code)()
            return response

        what = f"request to the coordinator of group {group!r}"
        return await call_retrying(self._timeout_s, attempt, what)


class _Adapter(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka has no types
    def __init__(self, owner: KafkaConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._owner._on_revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._owner._on_assigned({tp.partition for tp in assigned})


class KafkaConsumer:
    """A :class:`~wakeline.topics.port.GroupConsumer` of the Kafka log."""

    def __init__(
        self,
        log: KafkaLog,
        group: str,
        topic: str,
        listener: AssignmentListener,
        *,
        session_timeout_s: float,
        instance_id: str | None = None,
        max_poll_records: int = 500,
        max_poll_interval_s: float = 300.0,
        hosting: HostingSource | None = None,
    ) -> None:
        contract.check_consumer_args(session_timeout_s, max_poll_records)
        self._announcer = Announcer(hosting) if hosting is not None else None
        self._log = log
        self.group = group
        self.topic = topic
        self._listener = listener
        self._session_ms = max(1, round(session_timeout_s * 1000))
        self._max_poll = max_poll_records
        self._max_poll_interval_ms = max(1, round(max_poll_interval_s * 1000))
        self._member_id = instance_id or uuid.uuid4().hex
        self._instance_id = instance_id
        self._held: frozenset[int] = frozenset()
        self._held_as: str | None = None  # the broker's member id that was assigned _held
        self._announcing = False  # a new assignment is being told to the listener
        self._lock = asyncio.Lock()
        self._consumer: Any = None
        self._starting: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._listening = True
        self._closed = False

    @property
    def member_id(self) -> str:
        """This member's id in wakeline (stable; the broker's is :attr:`broker_member_id`)."""
        return self._member_id

    @property
    def broker_member_id(self) -> str | None:
        coordinator = getattr(self._consumer, "_coordinator", None)
        return getattr(coordinator, "member_id", None) or None

    def assignment(self) -> frozenset[int]:
        """The partitions the listener was told this member holds."""
        return self._held

    async def poll(self, timeout_s: float) -> list[Record]:
        contract.check_open(self._closed, f"consumer {self._member_id}")
        self._raise_pending()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        if not await self._started(timeout_s):
            self._raise_pending()
            return []
        self._raise_pending()
        if self._announcer is not None and self._announcer.wants_rejoin():
            self._consumer._coordinator.request_rejoin()  # a rebalance with the new metadata
        remaining = max(0.0, deadline - loop.time())
        try:
            # getmany waits for a rebalance in progress without a timeout: bound it
            batches = await asyncio.wait_for(
                self._consumer.getmany(
                    timeout_ms=int(remaining * 1000), max_records=self._max_poll
                ),
                remaining + 0.5,
            )
        except TimeoutError:
            return []
        except Exception as exc:
            raise map_error(exc, f"poll of group {self.group!r}") from exc
        records: list[Record] = []
        async with self._lock:  # a listener call in progress (in aiokafka's task) ends first
            for tp, batch in batches.items():
                if not batch:
                    continue
                if self._announcing or tp.partition not in self._held:  # read them later
                    with contextlib.suppress(Exception):
                        self._consumer.seek(tp, batch[0].offset)
                    continue
                records.extend(to_record(r) for r in batch)
        return records

    def seek(self, partition: int, offset: int) -> None:
        contract.check_seek(partition, offset, self._held, self._member_id)
        self._consumer.seek(TopicPartition(self.topic, partition), offset)

    async def commit(self, offsets: Mapping[int, int]) -> None:
        contract.check_offsets(offsets.values())
        if not offsets:
            return
        consumer = self._consumer
        joined = self._starting is not None and self._starting.done() and not self._closed
        tps = {TopicPartition(self.topic, p): o for p, o in offsets.items()}
        if joined and set(tps) <= set(consumer.assignment()):
            try:
                await consumer.commit(tps)
            except Exception as exc:
                raise map_error(exc, f"commit of group {self.group!r}") from exc
            return
        await self._log.offsets.simple_commit(self.group, self.topic, offsets)

    async def close(self) -> None:
        """Revoke everything (``on_revoked``), then leave the group so others take over now."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._consumer is not None:
                try:
                    async with self._lock:
                        self._listening = False
                        revoked, self._held = self._held, frozenset()
                        if revoked:
                            await self._listener.on_revoked(revoked)
                finally:
                    await self._stop()
        finally:
            self._log.forget_consumer(self)
        self._raise_pending()

    async def _freeze(self) -> None:
        """Tests: stop heartbeating, as if this process were paused."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is not None:
            await coordinator._stop_heartbeat_task()

    async def _thaw(self) -> None:
        """Tests: heartbeat again after :meth:`_freeze`, as a process woken up does (if its
        session expired meanwhile, the heartbeat fails and the member rejoins as a new one)."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is not None:
            coordinator._start_heartbeat_task()

    # -- internals --------------------------------------------------------------------------

    def _raise_pending(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    async def _started(self, timeout_s: float) -> bool:
        """Start (join) in the background; True once the consumer is started."""
        if self._starting is None:
            await self._log.partition_count(self.topic)  # UnknownTopicError, fast
            self._consumer = self._log.new_consumer(
                group_id=self.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=self._session_ms,
                heartbeat_interval_ms=max(1, self._session_ms // 3),
                rebalance_timeout_ms=max(self._session_ms, self._log.request_timeout_ms // 2),
                max_poll_interval_ms=self._max_poll_interval_ms,
                group_instance_id=self._instance_id,
                **self._assignors(),
            )
            self._consumer.subscribe([self.topic], listener=_Adapter(self))
            self._starting = asyncio.get_running_loop().create_task(
                self._consumer.start(), name=f"wakeline-kafka-join-{self._member_id}"
            )
        starting = self._starting
        if not starting.done():
            await asyncio.wait([starting], timeout=max(0.0, timeout_s))
            if not starting.done():
                return False
        exc = starting.exception()
        if exc is not None:
            raise map_error(exc, f"joining group {self.group!r}") from exc
        return True

    def _assignors(self) -> dict[str, Any]:
        if self._announcer is None:
            return {}
        return {"partition_assignment_strategy": self._announcer.assignors()}

    async def _stop(self) -> None:
        starting = self._starting
        if starting is not None and not starting.done():
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
        try:
            await self._consumer.stop()
        except Exception as exc:
            log.warning(
                "consumer %s of group %s: stop failed: %r", self._member_id, self.group, exc
            )

    async def _on_revoked(self) -> None:
        """aiokafka's rebalances are eager: everything is revoked before the member rejoins.
        The listener is told nothing yet; :meth:`_on_assigned` tells it what really left."""

    async def _on_assigned(self, partitions: set[int]) -> None:
        if not self._listening:
            return
        # Set before the first await: aiokafka already fetches the new assignment, and until
        # the listener is told, poll returns none of it (see the module docstring).
        self._announcing = True
        try:
            # offsets this process committed in a transaction: visible before positions are read
            tps = [TopicPartition(self.topic, p) for p in partitions]
            await self._log.visibility.settle(tps, self.group)
            async with self._lock:
                if self._listening:
                    await self._announce(frozenset(partitions))
        finally:
            self._announcing = False

    async def _announce(self, new: frozenset[int]) -> None:
        member = self.broker_member_id
        if member == self._held_as:
            gone, added = self._held - new, new - self._held
        else:  # a new membership: what the old one held may have moved meanwhile
            gone, added = self._held, new
        self._held, self._held_as = new, member
        if gone:
            await self._call(self._listener.on_revoked, gone)
        if added:
            await self._call(self._listener.on_assigned, added)

    async def _call(
        self, callback: Callable[[frozenset[int]], Awaitable[None]], partitions: frozenset[int]
    ) -> None:
        try:
            await callback(partitions)
        except Exception as exc:  # aiokafka would only log it: the next poll raises it
            log.debug("listener of %s raised %r", self._member_id, exc)
            if self._error is None:
                self._error = exc


def to_record(r: Any) -> Record:
    """A port :class:`Record` from an aiokafka ``ConsumerRecord``."""
    return Record(
        topic=r.topic,
        partition=r.partition,
        offset=r.offset,
        key=r.key,
        value=r.value if r.value is not None else b"",
        headers=tuple((k, bytes(v) if v is not None else b"") for k, v in r.headers),
        timestamp_ms=r.timestamp,
    )
