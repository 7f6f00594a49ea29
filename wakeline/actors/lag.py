"""Consumer lag of a worker: command records of its partitions that it has not handled yet.

Measured only when telemetry is on: every ``every_s`` seconds the probe reads the end offset of
each assigned commands partition and subtracts the position the worker has reached (the offset
after the last record it handled, or the group's committed offset before that).  The gauge
``wakeline.consumer.lag`` reports the latest figures (:meth:`Telemetry.observe_lag`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from wakeline.telemetry.runtime import Telemetry
from wakeline.topics.port import Log, LogError

log = logging.getLogger(__name__)


class LagProbe:
    def __init__(self, log: Log, topic: str, group: str, telemetry: Telemetry) -> None:
        self._log = log
        self._topic = topic
        self._group = group
        self._positions: dict[int, int] = {}
        self._lag: dict[int, int] = {}
        self.enabled = telemetry.enabled
        telemetry.observe_lag(log.system, topic, group, self.lag)

    def lag(self) -> Mapping[int, int]:
        return dict(self._lag)

    def handled(self, partition: int, offset: int) -> None:
        """The worker handled the record at ``offset`` of ``partition``."""
        self._positions[partition] = offset + 1

    async def measure(self, assignment: frozenset[int]) -> None:
        for partition in list(self._positions):
            if partition not in assignment:
                del self._positions[partition]
        lag: dict[int, int] = {}
        for partition in sorted(assignment):
            end = await self._log.end_offset(self._topic, partition)
            position = self._positions.get(partition)
            if position is None:
                position = await self._log.committed(self._group, self._topic, partition) or 0
            lag[partition] = max(0, end - position)
        self._lag = lag

    async def run(
        self, stop: asyncio.Event, assignment: Callable[[], frozenset[int]], every_s: float
    ) -> None:
        """Measure until ``stop``; a log that does not answer is measured again next time."""
        while self.enabled and not stop.is_set():
            try:
                await self.measure(assignment())
            except LogError as exc:
                log.info("consumer lag not measured this time: %s", exc)
            except Exception:  # telemetry never stops a worker; the next round tries again
                log.exception("consumer lag not measured this time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
