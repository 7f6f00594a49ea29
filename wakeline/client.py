"""``Client``: start runs, follow their events, cancel and resume them.

The client only talks to the log: it publishes commands (key = run id) and reads a run's
events and notices from the partitions the run id maps to.  It never needs a worker to answer.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from wakeline import jsonutil
from wakeline.actors.errors import WakelineError
from wakeline.schemas.codec import DecodeError, command_codec, event_codec, notice_codec
from wakeline.schemas.commands import (
    CancelRun,
    Command,
    CommandPayload,
    CommandRejected,
    Notice,
    RaiseBudget,
    ResolveGate,
    ResolveInDoubt,
    ResumeRun,
    RunDrifted,
    RunResumed,
    StartRun,
)
from wakeline.schemas.events import (
    Budget,
    Event,
    Resolution,
    RunCancelled,
    RunCompleted,
    RunFailed,
)
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import Log, OutRecord
from wakeline.topics.specs import DEFAULT_TOPICS, Topics


class RunError(WakelineError):
    """A run did not complete: it failed, was cancelled, drifted or was rejected."""

    def __init__(self, run_id: str, status: str, message: str) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(f"run {run_id} {status}: {message}")


@dataclass(frozen=True, slots=True)
class RunHandle:
    run_id: str
    partition: int
    from_offset: int
    """Events offset at or before the run's first event: where to start reading."""


@dataclass(frozen=True, slots=True)
class RunUpdate:
    """One item of :meth:`Client.watch`: a journal event or an out-of-journal notice."""

    event: Event | None = None
    notice: Notice | None = None


class Client:
    def __init__(self, log: Log, *, topics: Topics = DEFAULT_TOPICS, issuer: str = "") -> None:
        self._log = log
        self._topics = topics
        self._issuer = issuer

    async def _partition(self, run_id: str) -> int:
        count = await self._log.partition_count(self._topics.commands)
        return partition_for(run_id.encode(), count)

    async def _send(self, run_id: str, payload: CommandPayload) -> str:
        command_id = uuid.uuid4().hex
        command = Command(command_id, run_id, int(time.time() * 1000), self._issuer, payload)
        value = command_codec().encode(command)
        await self._log.append(self._topics.commands, [OutRecord(run_id.encode(), value)])
        return command_id

    async def start_run(
        self,
        agent: str,
        input: Any,
        *,
        run_id: str | None = None,
        tenant: str = "",
        budget: Budget | None = None,
    ) -> RunHandle:
        """Publish a start command; the run id is the idempotency key of the start."""
        run_id = run_id or uuid.uuid4().hex
        partition = await self._partition(run_id)
        offset = await self._log.end_offset(self._topics.events, partition)
        await self._send(run_id, StartRun(agent, jsonutil.dumps(input), tenant, budget))
        return RunHandle(run_id, partition, offset)

    async def cancel(self, run_id: str, reason: str = "") -> None:
        await self._send(run_id, CancelRun(reason))

    async def resume(self, run_id: str) -> None:
        await self._send(run_id, ResumeRun())

    async def approve(self, run_id: str, gate: str, reason: str = "") -> None:
        """Approve an open gate (or a policy denial waiting for a person) of a run."""
        await self._send(run_id, ResolveGate(gate, True, reason))

    async def reject(self, run_id: str, gate: str, reason: str = "") -> None:
        await self._send(run_id, ResolveGate(gate, False, reason))

    async def raise_budget(self, run_id: str, metric: str, limit: str | int | Decimal) -> None:
        """Raise the run's ``usd`` / ``tokens`` / ``model_calls`` / ``wall_time_ms`` limit."""
        await self._send(run_id, RaiseBudget(metric, str(limit)))

    async def resolve_in_doubt(
        self, run_id: str, step: int, resolution: Resolution, result: Any = None
    ) -> None:
        """RETRY the call (same idempotency key), SUPPLY its result, or FAIL the run."""
        text = jsonutil.dumps(result) if resolution == "SUPPLY" else ""
        await self._send(run_id, ResolveInDoubt(step, resolution, text))

    async def watch(
        self, run_id: str, *, from_offset: int = 0, poll_s: float = 0.2
    ) -> AsyncIterator[RunUpdate]:
        """The run's events from its first one, then live, each once and in order, plus
        notices about it; ends after its terminal event, or a drift or rejection that no
        later event superseded (a drifted run resumed with fixed code goes on)."""
        partition = await self._partition(run_id)
        key = run_id.encode()
        events_at, notices_at = from_offset, 0
        expected = 0
        last_event_ms = -1
        while True:
            records = await self._log.read(
                self._topics.events, partition, events_at, timeout_s=poll_s
            )
            for record in records:
                events_at = record.offset + 1
                if record.key != key:
                    continue
                event = event_codec().decode(record.value)
                if event.seq != expected:
                    continue
                expected += 1
                last_event_ms = max(last_event_ms, event.time_ms)
                yield RunUpdate(event=event)
                if event.is_terminal:
                    return
            notes = await self._log.read(self._topics.notices, partition, notices_at)
            final: Notice | None = None
            for record in notes:
                notices_at = record.offset + 1
                if record.key != key:
                    continue
                try:
                    notice = notice_codec().decode(record.value)
                except DecodeError:
                    continue
                yield RunUpdate(notice=notice)
                if isinstance(notice.payload, RunDrifted):
                    final = notice
                elif isinstance(notice.payload, CommandRejected) and expected == 0:
                    final = notice  # the start itself was rejected: there is no run
                elif isinstance(notice.payload, RunResumed):
                    final = None
            if final is not None and final.time_ms >= last_event_ms:
                return

    async def events(self, run_id: str, *, from_offset: int = 0) -> AsyncIterator[Event]:
        """Only the journal events of :meth:`watch`."""
        async for update in self.watch(run_id, from_offset=from_offset):
            if update.event is not None:
                yield update.event

    async def result(self, run_id: str, *, from_offset: int = 0) -> Any:
        """Wait for the run to end; its output, or :class:`RunError`."""
        last: Notice | None = None
        async for update in self.watch(run_id, from_offset=from_offset):
            if update.notice is not None:
                last = update.notice
                continue
            assert update.event is not None
            payload = update.event.payload
            if isinstance(payload, RunCompleted):
                return jsonutil.loads(payload.output)
            if isinstance(payload, RunFailed):
                raise RunError(run_id, "failed", f"{payload.error_type}: {payload.message}")
            if isinstance(payload, RunCancelled):
                raise RunError(run_id, "cancelled", payload.reason)
        # the watch ended on a drift or a rejection that nothing superseded
        note = last.payload if last is not None else None
        if isinstance(note, RunDrifted):
            raise RunError(run_id, "drifted", note.message)
        if isinstance(note, CommandRejected):
            raise RunError(run_id, "rejected", note.reason)
        raise RunError(run_id, "unknown", "the event stream ended")
