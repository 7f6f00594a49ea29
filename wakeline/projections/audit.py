"""The audit view: a hash chain per run over every event, as it was first folded.

``aud/<run_id>/<seq:012d>`` -> JSON ``{hash, record_sha256, partition, offset, type, writer,
time_ms, by}`` where ``hash = sha256(previous hash + ":" + sha256(record value))`` and the first
previous hash is ``sha256("wakeline-audit:" + run_id)``.  ``by`` names who decided, for the
events people cause (gates, budget raises, in-doubt resolutions, cancels).

:func:`verify` re-reads a run's journal from the log and checks two chains.  The log's own:
every event carries ``prev``, the sha256 of the run's previous record, set by the writer, so a
record changed in place is named whatever any projection holds (a rebuild cannot reset it).
And this view's: an event whose bytes changed after it was folded (the only check of a run's
last event, which no successor vouches for), a missing or an extra event.  Given the record
key, it also names every record of the run that no holder of the key appended (a forged
approval appended raw to the topic, say: see :mod:`wakeline.topics.signing`); the chains are
then checked over the signed records only.  Each problem is reported with its seq, offset and
type.  Keep the audit store where the log's writers cannot reach it
(or ship chain heads elsewhere) for the check to mean something against a privileged attacker.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

from wakeline.projections import EVENTS
from wakeline.projections.journal import is_seq_suffix
from wakeline.projections.rows import AuditEntry, AuditProblem, AuditReport, load
from wakeline.projections.store import (
    BatchView,
    Decoded,
    JsonObject,
    ProjectionStore,
    load_json,
)
from wakeline.schemas.codec import DecodeError, event_codec, record_hash
from wakeline.schemas.commands import Notice
from wakeline.schemas.events import (
    BudgetRaised,
    Event,
    EventPayload,
    GateResolved,
    InDoubtResolved,
    RunCancelled,
)
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import Log, Record
from wakeline.topics.signing import RecordSigner


def audit_key(run_id: str, seq: int) -> bytes:
    return f"aud/{run_id}/{seq:012d}".encode()


def audit_prefix(run_id: str) -> bytes:
    return f"aud/{run_id}/".encode()


def genesis(run_id: str) -> str:
    return hashlib.sha256(f"wakeline-audit:{run_id}".encode()).hexdigest()


def chain(previous: str, value: bytes) -> tuple[str, str]:
    """``(record sha256, chained hash)`` of one record after ``previous``."""
    digest = record_hash(value)
    return digest, hashlib.sha256(f"{previous}:{digest}".encode()).hexdigest()


def decided_by(payload: EventPayload) -> str | None:
    if isinstance(payload, GateResolved | BudgetRaised | InDoubtResolved | RunCancelled):
        return payload.by
    return None


class AuditProjection:
    name = "audit"
    topics = (EVENTS,)

    def apply(self, view: BatchView, record: Record, decoded: Decoded) -> None:
        if isinstance(decoded, Notice):
            return
        run_id, seq = decoded.run_id, decoded.seq
        if view.get(audit_key(run_id, seq)) is not None:
            return  # a duplicate of an event already chained: the first one stays
        previous = genesis(run_id)
        if seq > 0:
            before = view.get_json(audit_key(run_id, seq - 1))
            previous = str(before["hash"]) if before else "missing"
        digest, hashed = chain(previous, record.value)
        entry: JsonObject = {
            "hash": hashed,
            "record_sha256": digest,
            "partition": record.partition,
            "offset": record.offset,
            "type": decoded.type,
            "writer": decoded.writer,
            "time_ms": decoded.time_ms,
            "by": decided_by(decoded.payload),
        }
        view.put_json(audit_key(run_id, seq), entry)


def audit_trail(store: ProjectionStore, run_id: str) -> list[AuditEntry]:
    """The run's chain in seq order."""
    prefix = audit_prefix(run_id)
    return [
        load(AuditEntry, {**load_json(value), "seq": int(key[len(prefix) :])})
        for key, value in store.scan(prefix)
        if is_seq_suffix(key, prefix)
    ]


async def verify(
    log: Log,
    store: ProjectionStore,
    run_id: str,
    *,
    events_topic: str,
    signer: RecordSigner | None = None,
) -> AuditReport:
    """Recompute ``run_id``'s chain from the log and compare it with the audit view (and,
    with ``signer``, check every record's signature)."""
    trail = audit_trail(store, run_id)
    partitions = await log.partition_count(events_topic)
    partition = partition_for(run_id.encode(), partitions)
    first = trail[0].offset if trail else 0
    records = await _run_records(log, events_topic, partition, run_id, first)
    foreign = foreign_records(records, signer)
    records = _without_impostors(records, foreign)
    problems = _merged(foreign, log_chain_problems(records))
    problems += _view_problems(run_id, records, trail, problems)
    return AuditReport(run_id, len(records), tuple(problems))


def _merged(foreign: list[AuditProblem], chain: list[AuditProblem]) -> list[AuditProblem]:
    """One problem per record: a record the chain names keeps the chain's (more telling)
    account, with its signature's beside it."""
    named = {p.offset: p for p in chain}
    out = [p for p in foreign if p.offset not in named]
    for p in chain:
        also = [f.problem for f in foreign if f.offset == p.offset]
        out.append(replace(p, problem="; ".join([p.problem, *also])) if also else p)
    return out


def _without_impostors(records: list[Record], foreign: list[AuditProblem]) -> list[Record]:
    """``records`` less the unsigned ones that take the seq of a signed record (a forged
    event beside the real one); an unsigned record alone at its seq (one changed in place)
    stays, so the chain check names it too."""
    suspects = {p.offset for p in foreign}
    signed = (_decoded(r.value) for r in records if r.offset not in suspects)
    signed_seqs = {event.seq for event in signed if event is not None}
    impostors = {p.offset for p in foreign if p.seq in signed_seqs}
    return [r for r in records if r.offset not in impostors]


def foreign_records(records: Sequence[Record], signer: RecordSigner | None) -> list[AuditProblem]:
    """The records among ``records`` that no holder of the record key appended."""
    if signer is None:
        return []
    problems: list[AuditProblem] = []
    for record in records:
        problem = signer.problem(record)
        if problem is not None:
            event = _decoded(record.value)
            seq = -1 if event is None else event.seq
            problems.append(AuditProblem(seq, record.offset, _type_of(record.value), problem))
    return problems


def log_chain_problems(records: Sequence[Record]) -> list[AuditProblem]:
    """The first break of the hash chain the log carries itself: each event's ``prev`` is the
    sha256 of the run's previous record, so a record changed in place no longer matches what
    its successor says of it, whatever any projection holds.  Runs written before the chain
    existed (no ``prev`` anywhere) have nothing to check.  The last event has no successor to
    vouch for it: only the audit view catches a change to it."""
    decoded = [_decoded(r.value) for r in records]
    if not any(e is not None and e.prev for e in decoded):
        return []
    for seq in range(1, len(records)):
        event, before = decoded[seq], records[seq - 1]
        if event is None or event.prev != record_hash(before.value):
            kind = _type_of(before.value)
            what = f"changed in the log: seq {seq} carries another hash of it"
            return [AuditProblem(seq - 1, before.offset, kind, what)]
    return []


def _view_problems(
    run_id: str, records: list[Record], trail: list[AuditEntry], found: list[AuditProblem]
) -> list[AuditProblem]:
    """Differences between the log and the audit view (the chain as it was first folded)."""
    problems: list[AuditProblem] = []
    seen = {p.seq for p in found}
    previous = genesis(run_id)
    for seq, record in enumerate(records):
        kind = _type_of(record.value)
        if seq >= len(trail):
            problems.append(AuditProblem(seq, record.offset, kind, "not in the audit trail"))
            break
        digest, hashed = chain(previous, record.value)
        expected = trail[seq]
        if digest != expected.record_sha256 or hashed != expected.hash:
            if seq not in seen:
                what = f"changed since it was audited (was a {expected.type})"
                problems.append(AuditProblem(seq, record.offset, kind, what))
            break
        previous = hashed
    if len(records) < len(trail) and not problems:
        gone = trail[len(records)]
        problems.append(AuditProblem(len(records), gone.offset, gone.type, "missing from the log"))
    return problems


def _decoded(value: bytes) -> Event | None:
    try:
        return event_codec().decode(value)
    except DecodeError:
        return None


def _type_of(value: bytes) -> str:
    try:
        return event_codec().decode(value).type
    except DecodeError as exc:
        return f"undecodable ({exc})"


async def _run_records(
    log: Log, topic: str, partition: int, run_id: str, offset: int
) -> list[Record]:
    key = run_id.encode()
    end = await log.end_offset(topic, partition)
    out: list[Record] = []
    while offset < end:
        batch = await log.read(topic, partition, offset, max_records=5000)
        if not batch:
            break
        out.extend(r for r in batch if r.key == key)
        offset = batch[-1].offset + 1
    return out
