"""Read-your-writes for one process: transactions it committed that readers may not see yet.

Kafka writes a transaction's commit markers after EndTxn returns.  Until the marker of a
partition is written, ``read_committed`` readers (and the partition's last stable offset)
stop before the transaction's records, and OffsetFetch returns the group's previous offsets.
Waiting for the markers at every commit put one or two extra round trips (ListOffsets,
OffsetFetch, polled) on every step of every run, for the benefit of reads that mostly never
come.

So a writer only *notes* what it committed (:meth:`Visibility.committed`), and a read waits
for what was noted on the partitions it touches (:meth:`Visibility.settle`), bounded by
``timeout_s`` (after which it reads what the broker shows, as any other process would).  A
read right after an append in the same process therefore still sees it, while the writer's
next transaction does not wait.  Other processes never had that guarantee and do not get it:
a new owner of a partition opens the same writer id first, and InitProducerId completes the
previous owner's transaction before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from aiokafka.structs import TopicPartition

EndOffsets = Callable[[list[TopicPartition]], Awaitable[Mapping[TopicPartition, int]]]
FetchOffsets = Callable[[str, Sequence[TopicPartition]], Awaitable[Mapping[TopicPartition, int]]]
GroupPartition = tuple[str, TopicPartition]


class Visibility:
    """What this process committed and has not yet seen visible; see the module docstring."""

    def __init__(
        self, end_offsets: EndOffsets, fetch_offsets: FetchOffsets, timeout_s: float = 2.0
    ) -> None:
        self._end_offsets = end_offsets
        self._fetch_offsets = fetch_offsets
        self._timeout_s = timeout_s
        self._ends: dict[TopicPartition, int] = {}
        self._commits: dict[GroupPartition, int] = {}

    def committed(
        self, ends: Mapping[TopicPartition, int], commits: Mapping[GroupPartition, int]
    ) -> None:
        """Note a committed transaction: each partition's records end before ``ends[tp]``;
        ``commits[(group, tp)]`` is the offset it committed for ``group``."""
        for tp, end in ends.items():
            self._ends[tp] = max(self._ends.get(tp, 0), end)
        for key, offset in commits.items():
            self._commits[key] = max(self._commits.get(key, -1), offset)

    @property
    def pending(self) -> int:
        """How many partitions (and group offsets) are still noted (observability, tests)."""
        return len(self._ends) + len(self._commits)

    async def settle(self, tps: Iterable[TopicPartition], group: str | None = None) -> None:
        """Wait until the records (and, with ``group``, the offset commits of that group)
        noted for ``tps`` are visible, at most ``timeout_s``."""
        chosen = set(tps)
        ends = {tp: end for tp, end in self._ends.items() if tp in chosen}
        commits = {
            key: offset
            for key, offset in self._commits.items()
            if key[0] == group and key[1] in chosen
        }
        if not ends and not commits:
            return
        await self._wait(ends, commits)

    async def _wait(
        self, ends: dict[TopicPartition, int], commits: dict[GroupPartition, int]
    ) -> None:
        deadline = time.monotonic() + self._timeout_s
        pause = 0.0005
        while ends or commits:
            with contextlib.suppress(Exception):  # a read after the deadline reports errors
                if ends:
                    got = await self._end_offsets(list(ends))
                    self._seen_ends({tp: e for tp, e in ends.items() if got.get(tp, -1) >= e})
                    ends = {tp: e for tp, e in ends.items() if got.get(tp, -1) < e}
                for group in {g for g, _ in commits}:
                    tps = [tp for g, tp in commits if g == group]
                    seen = await self._fetch_offsets(group, tps)
                    done = {(g, tp): o for (g, tp), o in commits.items() if g == group}
                    done = {k: o for k, o in done.items() if seen.get(k[1], -1) >= o}
                    self._seen_commits(done)
                    commits = {k: o for k, o in commits.items() if k not in done}
            if not (ends or commits) or time.monotonic() + pause > deadline:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)

    def _seen_ends(self, seen: Mapping[TopicPartition, int]) -> None:
        for tp, end in seen.items():
            if self._ends.get(tp, 0) <= end:  # nothing later was committed meanwhile
                self._ends.pop(tp, None)

    def _seen_commits(self, seen: Mapping[GroupPartition, int]) -> None:
        for key, offset in seen.items():
            if self._commits.get(key, -1) <= offset:
                self._commits.pop(key, None)
