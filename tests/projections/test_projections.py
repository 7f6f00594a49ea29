"""Projections folded from a real (embedded) log: runs, steps, journal, queries, rebuild."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wakeline.core.model import Usage
from wakeline.projections import EVENTS_TOPIC, NOTICES_TOPIC
from wakeline.projections.journal import JournalProjection
from wakeline.projections.queries import Queries
from wakeline.projections.rebuild import rebuild
from wakeline.projections.rows import Page, RunRow, dump
from wakeline.projections.runner import catch_up, follow
from wakeline.projections.runs import RunsProjection
from wakeline.projections.steps import StepsProjection
from wakeline.projections.store import (
    PROJECTION_ERRORS,
    BatchView,
    Decoded,
    JsonObject,
    Projection,
    ProjectionStore,
)
from wakeline.schemas.codec import event_codec, notice_codec
from wakeline.schemas.commands import CommandRejected, Notice, NoticePayload, RunDrifted
from wakeline.schemas.events import (
    Event,
    EventPayload,
    ModelCallCompleted,
    ModelCallFailed,
    ModelCallRequested,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
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
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.port import OutRecord, Record, TopicSpec

PARTITIONS = 3


def projections(store: ProjectionStore | None = None) -> list[Projection]:
    return [RunsProjection(), StepsProjection(), JournalProjection(store)]


async def open_log(path: Path) -> EmbeddedLog:
    log = await EmbeddedLog.open(path)
    await log.create_topics(
        [TopicSpec(EVENTS_TOPIC, PARTITIONS), TopicSpec(NOTICES_TOPIC, PARTITIONS)]
    )
    return log


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EmbeddedLog]:
    opened = await open_log(tmp_path / "log")
    yield opened
    await opened.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ProjectionStore]:
    with ProjectionStore(tmp_path / "proj") as opened:
        yield opened


@dataclass
class Journal:
    """Builds one run's events by hand."""

    run_id: str
    t: int = 1_000
    seq: int = 0
    events: list[Event] = field(default_factory=list)

    def add(self, payload: EventPayload, dt: int = 10) -> int:
        self.t += dt
        self.events.append(Event(self.run_id, self.seq, self.t, "w1", payload))
        self.seq += 1
        return self.seq - 1

    def records(self) -> list[OutRecord]:
        return [event_record(e) for e in self.events]


def event_record(event: Event) -> OutRecord:
    return OutRecord(key=event.run_id.encode(), value=event_codec().encode(event))


def notice_record(run_id: str, time_ms: int, payload: NoticePayload) -> OutRecord:
    value = notice_codec().encode(Notice(run_id, time_ms, "w1", payload))
    return OutRecord(key=run_id.encode(), value=value)


def started(run_id: str, t: int, agent: str = "writer", tenant: str = "acme") -> Journal:
    j = Journal(run_id, t=t)
    j.add(RunStarted(agent=agent, input='{"q":1}', tenant=tenant, command_id=f"c-{run_id}"), 0)
    return j


def model_req(model: str = "gpt-x") -> ModelCallRequested:
    return ModelCallRequested("openai", model, "d" * 8, '{"messages":[]}')


def model_done(step: int, cost: Decimal | None, usage: Usage) -> ModelCallCompleted:
    return ModelCallCompleted(
        step,
        "openai",
        "gpt-x",
        f"resp-{step}",
        "gpt-x-1",
        "stop",
        '{"content":"hi"}',
        usage,
        1500,
        cost,
    )


def scenario() -> tuple[dict[str, Journal], list[OutRecord]]:
    done = started("r-done", 10_000)
    s1 = done.add(model_req())
    done.add(model_done(s1, Decimal("0.0015"), Usage(10, 5, 2, 1, 3)))
    s2 = done.add(ToolCallRequested("search", '{"q":"x"}', "a" * 8, "r-done:2", True))
    done.add(ToolCallCompleted(s2, '{"hits":1}', 700))
    s3 = done.add(model_req())
    done.add(model_done(s3, Decimal("0.00025"), Usage(20, 7, 0, 0, 0)))
    s4 = done.add(model_req())
    done.add(model_done(s4, None, Usage(1, 1, 0, 0, 0)))
    done.add(RunCompleted('{"answer":42}'))

    failed = started("r-fail", 20_000)
    s = failed.add(ToolCallRequested("rm", "{}", "b" * 8, "r-fail:1", False))
    failed.add(ToolCallFailed(s, "PermissionError", "nope"))
    failed.add(RunFailed("PermissionError", "nope"))

    cancelled = started("r-cancel", 30_000, agent="other")
    cancelled.add(StepRequested("fetch"))
    cancelled.add(RunCancelled("user asked", by="cli"))

    waiting = started("r-wait", 40_000)
    waiting.add(ValueRecorded("CLOCK", "40010"))
    waiting.add(TimerScheduled(fire_at_ms=99_000, duration_ms=59_000, purpose="sleep"))

    drifted = started("r-drift", 50_000)
    drifted.add(model_req())

    par = started("r-par", 60_000, tenant="beta")
    m = par.add(model_req())
    t = par.add(ToolCallRequested("calc", '{"x":1}', "c" * 8, "r-par:2", True))
    s = par.add(StepRequested("load"))
    par.add(StepCompleted(s, '"loaded"'))
    par.add(ToolCallCompleted(t, "2", 300))
    par.add(ModelCallFailed(m, "RateLimit", "slow down", True, 429, 900))

    notices = [
        notice_record("r-drift", 50_500, RunDrifted(1, "model gpt-x", "model gpt-y", "drift!")),
        notice_record("r-ghost", 70_000, CommandRejected("c-ghost", "unknown run")),
    ]
    journals = {j.run_id: j for j in (done, failed, cancelled, waiting, drifted, par)}
    return journals, notices


async def append_scenario(log: EmbeddedLog) -> dict[str, Journal]:
    journals, notices = scenario()
    for j in journals.values():
        await log.append(EVENTS_TOPIC, j.records())
    await log.append(NOTICES_TOPIC, notices)
    return journals


def as_json(row: RunRow | None) -> JsonObject:
    """The JSON of a run row that must be there (the API's and the CLI's shape)."""
    assert row is not None
    return dump(row)


def ids(page: Page[RunRow]) -> tuple[list[str], str | None]:
    return [r.run_id for r in page.items], page.next_cursor


def snapshot(store: ProjectionStore) -> dict[bytes, bytes]:
    return dict(store.items())


async def test_runs_steps_journal_and_queries(log: EmbeddedLog, store: ProjectionStore) -> None:
    journals = await append_scenario(log)
    folded = await catch_up(log, store, projections())
    assert folded == sum(len(j.events) for j in journals.values()) + 2
    q = Queries(store)

    done = as_json(q.get_run("r-done"))
    assert done["status"] == "completed"
    assert (done["agent"], done["tenant"], done["input"]) == ("writer", "acme", '{"q":1}')
    assert done["output"] == '{"answer":42}'
    assert done["tokens"] == {
        "input": 31,
        "output": 13,
        "cached_input": 2,
        "cache_write": 1,
        "reasoning": 3,
    }
    assert Decimal(done["cost_usd"]) == Decimal("0.00175")
    assert done["unpriced_calls"] == 1
    assert (done["model_calls"], done["tool_calls"], done["steps"]) == (3, 1, 4)
    assert (done["started_ms"], done["ended_ms"]) == (10_000, 10_090)
    assert done["last_seq"] == 9
    assert not any(key.startswith("_") for key in done)

    location = q.run_start_offset("r-done")
    assert location is not None
    partition, offset = location
    [first] = await log.read(EVENTS_TOPIC, partition, offset, max_records=1)
    assert event_codec().decode(first.value) == journals["r-done"].events[0]

    failed = as_json(q.get_run("r-fail"))
    assert failed["status"] == "failed"
    assert failed["error"] == {"type": "PermissionError", "message": "nope"}
    cancelled = as_json(q.get_run("r-cancel"))
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelled_by"] == "cli"
    assert cancelled["error"] == {"type": "cancelled", "message": "user asked"}
    assert as_json(q.get_run("r-wait"))["status"] == "waiting"
    assert as_json(q.get_run("r-par"))["status"] == "running"
    drifted = as_json(q.get_run("r-drift"))
    assert drifted["status"] == "drifted"
    assert drifted["drift"]["seq"] == 1 and drifted["drift"]["requested"] == "model gpt-y"
    ghost = as_json(q.get_run("r-ghost"))
    assert ghost["status"] == "rejected"
    assert ghost["rejection"]["reason"] == "unknown run"
    assert ghost["started_ms"] == 70_000 and ghost["partition"] is None
    assert q.get_run("nope") is None


async def test_steps_rows(log: EmbeddedLog, store: ProjectionStore) -> None:
    await append_scenario(log)
    await catch_up(log, store, projections())
    q = Queries(store)

    par = [dump(s) for s in q.steps("r-par")]
    assert [s["seq"] for s in par] == [1, 2, 3]
    model, tool, step = par
    assert (model["kind"], model["status"]) == ("model", "failed")
    assert model["error"]["status_code"] == 429
    assert model["latency_us"] == 900 and model["result_seq"] == 6
    assert (tool["kind"], tool["name"], tool["status"], tool["response"]) == (
        "tool",
        "calc",
        "completed",
        "2",
    )
    assert tool["idempotency_key"] == "r-par:2" and tool["latency_us"] == 300
    assert (step["kind"], step["name"], step["status"], step["response"]) == (
        "step",
        "load",
        "completed",
        '"loaded"',
    )
    assert step["latency_us"] == 10_000  # no latency in StepCompleted: from the event times

    done = [dump(s) for s in q.steps("r-done")]
    assert [s["kind"] for s in done] == ["model", "tool", "model", "model"]
    assert done[0]["usage"] == {
        "input": 10,
        "output": 5,
        "cached_input": 2,
        "cache_write": 1,
        "reasoning": 3,
    }
    assert done[0]["cost_usd"] == "0.0015" and done[3]["cost_usd"] is None
    assert done[0]["request"] == '{"messages":[]}' and done[0]["response"] == '{"content":"hi"}'
    assert done[0]["attempt"] == 1 and done[0]["provider"] == "openai"

    value, timer = map(dump, q.steps("r-wait"))
    assert (value["kind"], value["name"], value["status"], value["response"]) == (
        "value",
        "CLOCK",
        "recorded",
        "40010",
    )
    assert (timer["kind"], timer["name"], timer["status"]) == ("timer", "sleep", "open")
    assert timer["fire_at_ms"] == 99_000


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


async def test_list_runs_pagination_and_filters(log: EmbeddedLog, store: ProjectionStore) -> None:
    for i in range(7):
        j = started(f"run-{i}", 1_000 * (i + 1), agent="a" if i % 2 else "b")
        if i % 3 == 0:
            j.add(RunCompleted("null"))
        await log.append(EVENTS_TOPIC, j.records())
    same_time = started("run-x", 4_000)
    await log.append(EVENTS_TOPIC, same_time.records())
    await catch_up(log, store, projections())
    q = Queries(store)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        rows, cursor = ids(q.list_runs(limit=3, cursor=cursor))
        pages += 1
        seen += rows
        if cursor is None:
            break
    assert pages == 3
    assert seen == ["run-6", "run-5", "run-4", "run-3", "run-x", "run-2", "run-1", "run-0"]

    rows, cursor = ids(q.list_runs(status="completed", limit=2))
    assert rows == ["run-6", "run-3"] and cursor is not None
    rows, cursor = ids(q.list_runs(status="completed", limit=2, cursor=cursor))
    assert rows == ["run-0"] and cursor is None
    assert ids(q.list_runs(agent="a"))[0] == ["run-5", "run-3", "run-1"]
    assert ids(q.list_runs(since_ms=3_000, until_ms=5_000))[0] == ["run-3", "run-x", "run-2"]
    assert q.list_runs(tenant="nobody") == Page(())
    with pytest.raises(ValueError):
        q.list_runs(cursor="bogus")


async def test_follow_tails_new_records(log: EmbeddedLog, store: ProjectionStore) -> None:
    stop = asyncio.Event()
    batches: list[Sequence[Record]] = []
    task = asyncio.create_task(
        follow(log, store, projections(), stop=stop, poll_s=0.05, on_fold=batches.append)
    )
    j = started("r-live", 1_000)
    await log.append(EVENTS_TOPIC, j.records())
    q = Queries(store)
    for _ in range(200):
        if q.get_run("r-live") is not None:
            break
        await asyncio.sleep(0.01)
    j.add(RunCompleted('"done"'))
    await log.append(EVENTS_TOPIC, j.records()[1:])
    for _ in range(200):
        if as_json(q.get_run("r-live"))["status"] == "completed":
            break
        await asyncio.sleep(0.01)
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
