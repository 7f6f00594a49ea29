"""Replay a recorded run from its log and check that the code reproduces it byte for byte.

The run is re-driven in a fresh :class:`RunCore` whose app has no providers at all: every
model call, tool and step result comes from the journal, so a replay can never reach a
provider.  Each event the code produces is Avro-encoded again and compared with the bytes in
the log; the report names the first divergence (sequence, field, recorded and replayed value).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any

from wakeline.core.activation import Activation, Drifted, Ended, Recover
from wakeline.core.app import App
from wakeline.core.run_core import RunCore
from wakeline.core.steps import describe
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import Event
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import Log
from wakeline.topics.specs import DEFAULT_TOPICS, Topics


@dataclass(frozen=True, slots=True)
class Divergence:
    seq: int
    field: str
    recorded: str
    replayed: str
    recorded_event: Event | None = dataclasses.field(default=None, compare=False)
    """The journal's event at ``seq`` and the one the code produced there (when known)."""
    replayed_event: Event | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ReplayReport:
    run_id: str
    events: int
    """Events in the recorded journal."""
    checked: int
    """Events the code produced again and that were compared byte for byte."""
    identical: bool
    divergence: Divergence | None = None
    ended: bool = False
    """Whether the journal reached the run's terminal event."""
    next_calls: tuple[str, ...] = ()
    """What the code would do next if the run is still open."""


async def read_journal(
    log: Log, run_id: str, *, topics: Topics = DEFAULT_TOPICS, from_offset: int = 0
) -> list[bytes]:
    """The raw records of a run's journal, in sequence order."""
    partitions = await log.partition_count(topics.events)
    partition = partition_for(run_id.encode(), partitions)
    key = run_id.encode()
    end = await log.end_offset(topics.events, partition)
    out: list[bytes] = []
    offset = from_offset
    while offset < end:
        records = await log.read(topics.events, partition, offset, max_records=5000)
        if not records:
            break
        out.extend(r.value for r in records if r.key == key)
        offset = records[-1].offset + 1
    return out


def replay_journal(
    app: App, run_id: str, raw: list[bytes], *, version: str | None = None
) -> ReplayReport:
    """Replay ``raw`` against ``app`` (as ``version`` of its agent when given, else the
    version the journal names), no provider reachable."""
    codec = event_codec()
    journal = [codec.decode(b) for b in raw]
    if not journal:
        raise LookupError(f"run {run_id} has no events")
    bare = app.with_providers({})
    core = RunCore(run_id, bare, journal=list(journal), entropy=_no_entropy, version=version)
    last = journal[-1]
    try:
        live = core.activate(Activation(Recover(), last.time_ms, last.writer))
    finally:
        core.close()
    replayed = live.replayed
    if isinstance(live.status, Drifted):
        drift, produced = live.status.error, live.status.diverged
        recorded_event = journal[drift.seq] if drift.seq < len(journal) else None
        divergence = (
            _first_difference(recorded_event, produced)
            if recorded_event is not None and produced is not None
            else Divergence(drift.seq, "payload", drift.recorded, drift.requested)
        )
        return ReplayReport(run_id, len(journal), len(replayed), False, divergence)
    for event in replayed:
        # ``prev`` is the writer's chain over the log, not the core's: taken as recorded
        # (``audit verify`` checks the chain itself)
        chained = replace(event, prev=journal[event.seq].prev)
        again = codec.encode(chained, writer=raw[event.seq][2:10])
        if again != raw[event.seq]:
            diff = _first_difference(journal[event.seq], event)
            return ReplayReport(run_id, len(journal), len(replayed), False, diff)
    ended = isinstance(live.status, Ended) and live.status.terminal.seq < len(journal)
    return ReplayReport(
        run_id,
        len(journal),
        len(replayed),
        True,
        None,
        ended,
        tuple(describe(e.request.payload) for e in live.effects),
    )


async def replay_run(
    log: Log, app: App, run_id: str, *, topics: Topics = DEFAULT_TOPICS, from_offset: int = 0
) -> ReplayReport:
    raw = await read_journal(log, run_id, topics=topics, from_offset=from_offset)
    return replay_journal(app, run_id, raw)


def _no_entropy(n: int) -> bytes:
    """Recorded values come from the journal; this only feeds a continuation past its end."""
    return bytes(n)


def _first_difference(recorded: Event, replayed: Event) -> Divergence:
    found = _difference(recorded, replayed)
    return replace(found, recorded_event=recorded, replayed_event=replayed)


def _difference(recorded: Event, replayed: Event) -> Divergence:
    seq = recorded.seq
    if type(recorded.payload) is not type(replayed.payload):
        return Divergence(seq, "type", recorded.type, replayed.type)
    for field in ("run_id", "seq", "time_ms", "writer"):
        a, b = getattr(recorded, field), getattr(replayed, field)
        if a != b:
            return Divergence(seq, field, str(a), str(b))
    for f in dataclasses.fields(recorded.payload):
        a, b = getattr(recorded.payload, f.name), getattr(replayed.payload, f.name)
        if a != b:
            return Divergence(seq, f"payload.{f.name}", _short(a), _short(b))
    return Divergence(seq, "encoding", "(same values)", "(different bytes)")


def _short(value: Any, limit: int = 200) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."
