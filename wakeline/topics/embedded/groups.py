"""Consumer groups of the embedded log, shared by every process that opens the data directory.

State lives in SQLite: ``group_members`` (member id, heartbeat time, session timeout),
``group_owners`` (which member holds which partition) and ``group_offsets`` (committed next
offsets).  A member *syncs* in one write transaction: it refreshes its heartbeat, expires the
members whose last heartbeat is older than their session timeout (dropping what they own),
computes its target partitions (Kafka's range assignor over the sorted live member ids, or,
when the members announce different agent versions -- a file per member written before the
sync, see :mod:`.announce` -- the version-aware assignment of :mod:`wakeline.topics.hosting`)
and claims the target partitions nobody owns.  Then, outside the transaction:

1. partitions it holds that are not in its target any more (or that it lost while its session
   was expired) are revoked: ``listener.on_revoked(removed)`` runs, *then* they are released,
   so another member gets a partition only after its previous owner's ``on_revoked`` returned
   (or after that owner's session expired);
2. partitions it newly owns get their position (the group's committed offset, else 0) and
   ``listener.on_assigned(added)`` runs.

Syncs run from :meth:`EmbeddedConsumer.poll` (at most every 100 ms) and from a background
heartbeat task (every ``session_timeout_s / 3``), one at a time (a lock), so listener calls of
one consumer never overlap.  While a listener call is running the heartbeat task only refreshes
the heartbeat, so a slow listener does not lose the session.  A listener exception raised in a
sync of the heartbeat task is re-raised by the next ``poll`` (or ``close``): never swallowed.

A handoff therefore takes up to about one sync interval of the old owner plus one of the new
one.  Heartbeat times are wall-clock milliseconds (the processes share one machine's clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from wakeline.topics import contract
from wakeline.topics.embedded import appends, reads
from wakeline.topics.embedded.announce import assigner, hosting_path, write_hosting
from wakeline.topics.embedded.liveness import MemberLock, is_dead, lock_path
from wakeline.topics.embedded.membership import sql_group_release, sql_group_sync, sql_group_touch
from wakeline.topics.embedded.notify import wait_event
from wakeline.topics.hosting import HostingSource
from wakeline.topics.port import AssignmentListener, Record

if TYPE_CHECKING:
    from wakeline.topics.embedded.log import EmbeddedLog

_POLL_SYNC_S = 0.1
_WAIT_MIN_S = 0.002
_WAIT_MAX_S = 0.05


class EmbeddedConsumer:
    """A :class:`~wakeline.topics.port.GroupConsumer` of the embedded log.

    It joins its group at its first :meth:`poll`; until then :meth:`assignment` is empty.
    """

    def __init__(
        self,
        log: EmbeddedLog,
        group: str,
        topic: str,
        listener: AssignmentListener,
        *,
        session_timeout_s: float,
        member_id: str | None = None,
        max_poll_records: int = 500,
        hosting: HostingSource | None = None,
    ) -> None:
        contract.check_consumer_args(session_timeout_s, max_poll_records)
        self._log = log
        self._store = log.store
        self.group = group
        self.topic = topic
        self._listener = listener
        self._member_id = member_id or uuid.uuid4().hex
        self._session_ms = max(1, round(session_timeout_s * 1000))
        self._interval_s = session_timeout_s / 3
        self._poll_sync_s = min(self._interval_s, _POLL_SYNC_S)
        self._max_poll = max_poll_records
        self._assignment: set[int] = set()
        self._positions: dict[int, int] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._last_sync = -math.inf
        self._last_beat = -math.inf
        self._error: BaseException | None = None
        self._joined = False
        self._closed = False
        self._turn = 0
        self._alive = MemberLock(lock_path(log.data_dir, group, topic, self._member_id))
        self._hosting = hosting
        self._announced = ""

    @property
    def member_id(self) -> str:
        return self._member_id

    def assignment(self) -> frozenset[int]:
        return frozenset(self._assignment)

    def position(self, partition: int) -> int | None:
        """The next offset :meth:`poll` returns for ``partition`` (``None`` if not assigned)."""
        return self._positions.get(partition)

    async def poll(self, timeout_s: float) -> list[Record]:
        contract.check_open(self._closed, f"consumer {self._member_id}")
        self._raise_pending()
        self._start_heartbeat()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        pause = _WAIT_MIN_S
        while True:
            async with self._lock:
                if self._closed:
                    return []
                if time.monotonic() - self._last_sync >= self._poll_sync_s:
                    await self._sync()
                self._raise_pending()
                wake = self._log.notifier.event(self.topic, None)
                records = await self._fetch()
            remaining = deadline - loop.time()
            if records or remaining <= 0:
                return records
            await wait_event(wake, min(pause, remaining))
            pause = min(pause * 2, _WAIT_MAX_S)

    def seek(self, partition: int, offset: int) -> None:
        contract.check_seek(partition, offset, self._assignment, self._member_id)
        self._positions[partition] = offset

    async def commit(self, offsets: Mapping[int, int]) -> None:
        contract.check_offsets(offsets.values())
        if offsets:
            await self._store.write(
                functools.partial(
                    appends.commit_offsets,
                    group=self.group,
                    topic=self.topic,
                    offsets=dict(offsets),
                )
            )

    async def close(self) -> None:
        """Revoke everything (``on_revoked``), then leave the group so others take over now."""
        if self._closed:
            return
        self._closed = True
        try:
            async with self._lock:
                await self._stop_heartbeat()
                revoked = frozenset(self._assignment)
                self._assignment.clear()
                self._positions.clear()
                try:
                    if revoked:
                        await self._listener.on_revoked(revoked)
                finally:
                    if self._joined:
                        await self._release(None)  # leave the group
        finally:
            self._alive.release()
            self._log.forget(self)
        self._raise_pending()

    async def _freeze(self) -> None:
        """Tests: stop heartbeating, as if this process were paused (poll resumes it)."""
        await self._stop_heartbeat()

    # -- internals --------------------------------------------------------------------------

    def _raise_pending(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _start_heartbeat(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._heartbeat(), name=f"wakeline-heartbeat-{self._member_id}"
            )

    async def _stop_heartbeat(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _heartbeat(self) -> None:
        while True:
            delay = self._last_beat + self._interval_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            try:
                if self._lock.locked():
                    await self._store.write(
                        functools.partial(
                            sql_group_touch,
                            group=self.group,
                            topic=self.topic,
                            member_id=self._member_id,
                            session_ms=self._session_ms,
                        )
                    )
                    self._last_beat = time.monotonic()
                else:
                    async with self._lock:
                        await self._sync()
            except Exception as exc:  # kept for the next poll, which raises it
                self._last_beat = time.monotonic()
                if self._error is None:
                    self._error = exc

    async def _sync(self) -> None:
        """One membership round (the caller holds the lock); see the module docstring."""
        meta = await self._log.meta(self.topic)
        if not self._joined:  # hold the liveness lock for as long as this is a member
            hold = functools.partial(self._alive.hold, self._session_ms / 1000)
            await asyncio.get_running_loop().run_in_executor(None, hold)
        self._joined = True
        await self._announce()
        target, owned = await self._store.write(
            functools.partial(
                sql_group_sync,
                group=self.group,
                topic=self.topic,
                member_id=self._member_id,
                session_ms=self._session_ms,
                partitions=meta.partitions,
                dead=self._gone,
                assign=assigner(self._log.data_dir, self.group, self.topic, meta.partitions),
            )
        )
        self._last_sync = self._last_beat = time.monotonic()
        keep = owned & target
        revoked = self._assignment - keep
        release = owned - target
        if revoked:
            self._assignment -= revoked
            for partition in revoked:
                self._positions.pop(partition, None)
            try:
                await self._listener.on_revoked(frozenset(revoked))
            finally:
                if release:
                    await self._release(release)
        elif release:
            await self._release(release)
        added = keep - self._assignment
        if added:
            committed = await self._store.read(
                functools.partial(
                    reads.committed, group=self.group, topic=self.topic, partitions=added
                )
            )
            for partition in added:
                self._positions[partition] = committed.get(partition, 0)
            self._assignment |= added
            await self._listener.on_assigned(frozenset(added))

    async def _announce(self) -> None:
        """Write this member's announcement (:mod:`~wakeline.topics.hosting`) if it changed."""
        if self._hosting is None:
            return
        hosting = self._hosting.hosting()
        text = hosting.to_json()
        if text != self._announced:
            path = hosting_path(self._log.data_dir, self.group, self.topic, self._member_id)
            write = functools.partial(write_hosting, path, hosting)
            await asyncio.get_running_loop().run_in_executor(None, write)
            self._announced = text

    def _gone(self, member_id: str) -> bool:
        return is_dead(lock_path(self._log.data_dir, self.group, self.topic, member_id))

    async def _release(self, partitions: frozenset[int] | None) -> None:
        """Give up ``partitions`` (all of them, and leave the group, when ``None``)."""
        await self._store.write(
            functools.partial(
                sql_group_release,
                group=self.group,
                topic=self.topic,
                member_id=self._member_id,
                partitions=None if partitions is None else sorted(partitions),
            )
        )

    async def _fetch(self) -> list[Record]:
        """Up to ``max_poll_records`` from the positions, fair across partitions (round robin).

        Each poll starts at the next partition and takes at most an equal share from each.
        """
        partitions = sorted(self._assignment)
        if not partitions:
            return []
        start = self._turn % len(partitions)
        self._turn += 1
        share = -(-self._max_poll // len(partitions))
        wants = [(p, self._positions[p], share) for p in partitions[start:] + partitions[:start]]
        meta = await self._log.meta(self.topic)
        records = await self._store.read(functools.partial(reads.fetch, meta=meta, wants=wants))
        moved = {p for p, offset, _ in wants if self._positions.get(p) != offset}  # seek()
        records = [r for r in records if r.partition not in moved][: self._max_poll]
        for record in records:
            self._positions[record.partition] = record.offset + 1
        return records
