"""Projections folded from a real (embedded) log: journal, catch-up, crashes, follow, rebuild."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from projection_scenario import (
    PARTITIONS,
    Journal,
    append_scenario,
    as_json,
    event_record,
    model_done,
    notice_record,
    open_log,
    projections,
    snapshot,
    started,
)

from wakeline.projections import EVENTS_TOPIC, NOTICES_TOPIC
from wakeline.projections.journal import JournalProjection
from wakeline.projections.queries import Queries
from wakeline.projections.rebuild import rebuild
from wakeline.projections.runner import catch_up, follow
from wakeline.projections.store import (
    PROJECTION_ERRORS,
    BatchView,
    Decoded,
    ProjectionStore,
)
from wakeline.schemas.codec import event_codec
from wakeline.schemas.commands import CommandRejected, RunDrifted
from wakeline.schemas.events import (
    EventPayload,
    ModelCallFailed,
    ModelCallRequested,
    RunCancelled,
    RunCompleted,
    RunFailed,
    StepCompleted,
    StepFailed,
    StepRequested,
    TimerFired,
    TimerScheduled,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ValueRecorded,
)
from wakeline.schemas.usage import Usage
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.port import OutRecord, Record


async def test_journal(log: EmbeddedLog, store: ProjectionStore) -> None:
    journals = await append_scenario(log)
    await catch_up(log, store, projections())
    jp = JournalProjection(store)
    raw = jp.load("r-done")
    assert [event_codec().decode(v) for v in raw] == journals["r-done"].events
    assert raw == [r.value for r in journals["r-done"].records()]
    assert jp.has_run("r-done") and not jp.has_run("r-ghost") and not jp.has_run("r")
    assert jp.is_finished("r-done") and jp.is_finished("r-cancel")
    assert not jp.is_finished("r-wait")
    open_runs = {run for p in range(PARTITIONS) for run in jp.open_runs(p)}
    assert open_runs == {"r-wait", "r-drift", "r-par"}
    loc = Queries(store).run_start_offset("r-wait")
    assert loc is not None and "r-wait" in jp.open_runs(loc[0])


async def test_journal_run_ids_sharing_a_prefix(log: EmbeddedLog, store: ProjectionStore) -> None:
    a, b = started("a", 1), started("a/000000000001", 2)
    await log.append(EVENTS_TOPIC, a.records() + b.records())
    await catch_up(log, store, projections())
    jp = JournalProjection(store)
    assert jp.load("a") == [a.records()[0].value]
    assert jp.load("a/000000000001") == [b.records()[0].value]
    assert Queries(store).steps("a") == []


async def test_catch_up_is_idempotent_and_incremental(
    log: EmbeddedLog, store: ProjectionStore
) -> None:
    await append_scenario(log)
    first = await catch_up(log, store, projections(), chunk=4)
    before = snapshot(store)
    assert await catch_up(log, store, projections()) == 0
    assert snapshot(store) == before
    records = await log.read(EVENTS_TOPIC, 0, 0, max_records=100)
    assert store.fold(records, projections()) == 0  # below the stored offsets: skipped
    assert snapshot(store) == before
    assert first > 0
    for p in range(PARTITIONS):
        assert store.offset(EVENTS_TOPIC, p) == await log.end_offset(EVENTS_TOPIC, p)


class Boom(Exception):
    pass


@dataclass
class Exploding:
    """A projection that raises on its ``after``-th record (a crash mid-apply)."""

    after: int
    name: str = "exploding"
    topics: tuple[str, ...] = ("events",)
    seen: int = 0

    def apply(self, view: BatchView, record: Record, decoded: Decoded) -> None:
        view.put(b"zzz/" + str(record.offset).encode(), b"x")
        self.seen += 1
        if self.seen == self.after:
            raise Boom


async def test_crash_before_write_keeps_state_and_offsets_consistent(
    log: EmbeddedLog, store: ProjectionStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    journals = await append_scenario(log)
    # Fold half of the first partition that has records, then crash on the rest.
    ends = [await log.end_offset(EVENTS_TOPIC, p) for p in range(PARTITIONS)]
    partition = next(p for p in range(PARTITIONS) if ends[p] > 4)
    records = await log.read(EVENTS_TOPIC, partition, 0, max_records=1000)
    store.fold(records[:3], projections())
    before = snapshot(store)

    def crash(view: BatchView) -> None:
        raise Boom

    monkeypatch.setattr(store, "_write", crash)
    with pytest.raises(Boom):
        store.fold(records, projections())
    monkeypatch.undo()
    assert snapshot(store) == before
    assert store.offset(EVENTS_TOPIC, partition) == 3

    with pytest.raises(Boom):
        store.fold(records, [*projections(), Exploding(after=2)])
    assert snapshot(store) == before

    await catch_up(log, store, projections())
    with ProjectionStore(tmp_path / "fresh") as fresh:
        await catch_up(log, fresh, projections())
        assert snapshot(store) == snapshot(fresh)
    assert journals


async def test_undecodable_records_are_counted_and_skipped(
    log: EmbeddedLog, store: ProjectionStore
) -> None:
    j = started("r-bad", 5_000)
    j.add(RunCompleted('"ok"'))
    r0, r1 = j.records()
    garbage = OutRecord(key=b"r-bad", value=b"\xc3\x01not avro at all")
    await log.append(EVENTS_TOPIC, [r0, garbage, r1])
    await log.append(NOTICES_TOPIC, [OutRecord(key=b"r-bad", value=b"junk")])
    assert await catch_up(log, store, projections()) == 4
    q = Queries(store)
    assert q.projection_errors() == 2 == store.counter(PROJECTION_ERRORS)
    run = q.get_run("r-bad")
    assert run is not None and run.status == "completed"
    errors = dict(store.scan(b"err/"))
    assert len(errors) == 2
    assert all(b'"error"' in value for value in errors.values())


async def test_follow_tails_new_records(log: EmbeddedLog, store: ProjectionStore) -> None:
    stop = asyncio.Event()
    batches: list[Sequence[Record]] = []
    folded = asyncio.Event()

    def on_fold(batch: Sequence[Record]) -> None:
        batches.append(batch)
        folded.set()

    task = asyncio.create_task(
        follow(log, store, projections(), stop=stop, poll_s=0.05, on_fold=on_fold)
    )
    j = started("r-live", 1_000)
    await log.append(EVENTS_TOPIC, j.records())
    q = Queries(store)
    await asyncio.wait_for(folded.wait(), 10)
    assert as_json(q.get_run("r-live"))["status"] == "running"
    folded.clear()
    j.add(RunCompleted('"done"'))
    await log.append(EVENTS_TOPIC, j.records()[1:])
    await asyncio.wait_for(folded.wait(), 10)
    assert as_json(q.get_run("r-live"))["status"] == "completed"
    stop.set()
    assert await asyncio.wait_for(task, 5) == 2
    assert sum(len(b) for b in batches) == 2


async def test_rebuild_refolds_from_zero(log: EmbeddedLog, tmp_path: Path) -> None:
    await append_scenario(log)
    path = tmp_path / "db"
    with ProjectionStore(path) as store:
        await catch_up(log, store, projections(), chunk=5)
        expected = snapshot(store)
        store.fold(
            [Record(EVENTS_TOPIC, 0, 10_000, b"x", b"garbage")], projections()
        )  # a stray offset
    assert await rebuild(log, path, projections()) > 0
    with ProjectionStore(path) as store:
        assert snapshot(store) == expected
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("hi")
    with pytest.raises(ValueError):
        await rebuild(log, tmp_path / "notes", projections())


# -- property: incremental catch-ups == one fresh fold ------------------------------------

RUN_OPS = ("model", "tool", "step", "timer", "value", "finish", "fail_step", "end")
NOTICE_OPS = ("drift", "reject", "garbage")
OPS = st.tuples(st.integers(0, 3), st.sampled_from(RUN_OPS + NOTICE_OPS), st.integers(0, 5))


@dataclass
class RunState:
    journal: Journal
    open: list[tuple[int, str]] = field(default_factory=list)
    ended: bool = False


def _request(kind: str, k: int) -> EventPayload:
    if kind == "model":
        return ModelCallRequested("p", f"m{k}", "d", "{}", attempt=1 + k % 2)
    if kind == "tool":
        return ToolCallRequested(f"t{k}", "{}", "d", f"key{k}", bool(k % 2))
    if kind == "step":
        return StepRequested(f"s{k}")
    return TimerScheduled(1_000 + k, k, "sleep")


def _result(kind: str, step: int, k: int, fail: bool) -> EventPayload:
    if kind == "model":
        if fail:
            return ModelCallFailed(step, "E", "m", bool(k % 2), None, k)
        cost = None if k == 0 else Decimal(k) / Decimal(7_000)
        return model_done(step, cost.quantize(Decimal("1e-12")) if cost else None, Usage(k, k))
    if kind == "tool":
        return ToolCallFailed(step, "E", "m") if fail else ToolCallCompleted(step, str(k), k)
    if kind == "step":
        return StepFailed(step, "E", "m") if fail else StepCompleted(step, str(k))
    return TimerFired(step)


def _end(k: int) -> EventPayload:
    return (RunCompleted("1"), RunFailed("E", "m"), RunCancelled("why"))[k % 3]


def _event_op(state: RunState, op: str, k: int) -> EventPayload | None:
    if op in ("model", "tool", "step", "timer"):
        return _request(op, k)
    if op == "value":
        return ValueRecorded("UUID", f"u{k}")
    if op in ("finish", "fail_step") and state.open:
        seq, kind = state.open.pop(k % len(state.open))
        return _result(kind, seq, k, op == "fail_step")
    if op == "end":
        state.ended = True
        return _end(k)
    return None


def build_stream(ops: list[tuple[int, str, int]]) -> list[tuple[str, OutRecord]]:
    runs: dict[int, RunState] = {}
    out: list[tuple[str, OutRecord]] = []
    for t, (index, op, k) in enumerate(ops):
        run_id = f"run-{index}"
        if op in NOTICE_OPS:
            out.append((NOTICES_TOPIC, _notice(run_id, 100 * t, op, k)))
            continue
        state = runs.get(index)
        if state is None:
            state = runs[index] = RunState(started(run_id, 100 * t))
            out.append((EVENTS_TOPIC, event_record(state.journal.events[0])))
        if state.ended:
            continue
        payload = _event_op(state, op, k)
        if payload is None:
            continue
        seq = state.journal.add(payload, dt=k)
        if op in ("model", "tool", "step", "timer"):
            state.open.append((seq, op))
        out.append((EVENTS_TOPIC, event_record(state.journal.events[-1])))
    return out


def _notice(run_id: str, time_ms: int, op: str, k: int) -> OutRecord:
    if op == "drift":
        return notice_record(run_id, time_ms, RunDrifted(k, "a", "b", "m"))
    if op == "reject":
        return notice_record(run_id, time_ms, CommandRejected(f"c{k}", "r"))
    return OutRecord(key=run_id.encode(), value=bytes([0xC3, 0x01, k]) * 5)


async def _fold_in_steps(
    root: Path, stream: list[tuple[str, OutRecord]], cuts: list[int], chunk: int
) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    log = await open_log(root / "log")
    try:
        with ProjectionStore(root / "incremental") as store:
            bounds = [0, *sorted(set(cuts)), len(stream)]
            for lo, hi in itertools.pairwise(bounds):
                for topic in (EVENTS_TOPIC, NOTICES_TOPIC):
                    part = [r for tp, r in stream[lo:hi] if tp == topic]
                    if part:
                        await log.append(topic, part)
                await catch_up(log, store, projections(), chunk=chunk)
            incremental = snapshot(store)
        with ProjectionStore(root / "fresh") as fresh:
            await catch_up(log, fresh, projections())
            return incremental, snapshot(fresh)
    finally:
        await log.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(OPS, min_size=1, max_size=40),
    cut_fractions=st.lists(st.floats(0, 1), max_size=5),
    chunk=st.integers(1, 7),
)
def test_incremental_catch_up_equals_fresh_fold(
    ops: list[tuple[int, str, int]], cut_fractions: list[float], chunk: int
) -> None:
    stream = build_stream(ops)
    cuts = [int(f * len(stream)) for f in cut_fractions]
    with tempfile.TemporaryDirectory() as tmp:
        incremental, fresh = asyncio.run(_fold_in_steps(Path(tmp), stream, cuts, chunk))
    assert incremental == fresh
    assert any(key.startswith(b"meta/offset/") for key in fresh)
