"""The journal store can never skip a record (issue: a resumed run started from a journal with
a hole and re-billed a completed call).

Deterministic: a writer wrapper at the port seam holds the *return* of chosen appends after
they landed on the log, so appends of one partition complete out of order, and a revoke can
come between an append's commit and its fold.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wakeline import App, Context
from wakeline.actors.appender import JournalAppender
from wakeline.actors.journal_sync import JournalSync, format_key
from wakeline.client import Client
from wakeline.core.model import DeltaSink, ModelRequest, ModelResponse
from wakeline.projections import EVENTS, NOTICES
from wakeline.projections.journal import JournalProjection
from wakeline.projections.store import ProjectionStore
from wakeline.providers.mock import MockModel
from wakeline.replay import read_journal, replay_run
from wakeline.runtime import ensure_topics
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import Event, RunCompleted, RunStarted
from wakeline.telemetry.runtime import Telemetry
from wakeline.testing.harness import worker_running
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.port import OffsetCommit, OutRecord, PartitionWriter
from wakeline.topics.specs import DEFAULT_TOPICS

TOPICS = DEFAULT_TOPICS
NAMES = {EVENTS: TOPICS.events, NOTICES: TOPICS.notices}
Hold = Callable[[Sequence[OutRecord]], bool]


class HeldWriter:
    """A real writer whose appends matching ``hold`` land, then wait for ``release``."""

    def __init__(self, inner: PartitionWriter, hold: Hold) -> None:
        self._inner = inner
        self._hold = hold
        self.landed = asyncio.Event()
        self.release = asyncio.Event()

    @property
    def partition(self) -> int:
        return self._inner.partition

    async def append(
        self, topic: str, records: Sequence[OutRecord], *, commit: OffsetCommit | None = None
    ) -> list[int]:
        offsets = await self._inner.append(topic, records, commit=commit)
        if self._hold(records):
            self.landed.set()
            await self.release.wait()
        return offsets

    async def close(self) -> None:
        await self._inner.close()


class HeldLog:
    """The embedded log, whose writers hold the appends matching ``hold``."""

    def __init__(self, inner: EmbeddedLog, hold: Hold) -> None:
        self._inner = inner
        self._hold = hold
        self.writers: list[HeldWriter] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def writer(self, writer_id: str, partition: int) -> HeldWriter:
        held = HeldWriter(await self._inner.writer(writer_id, partition), self._hold)
        self.writers.append(held)
        return held


def _event(run_id: str, seq: int) -> Event:
    started = RunStarted("a", "null", "", f"c-{run_id}", None)
    return Event(run_id, seq, 0, "test", started)


def _carries(run_id: str) -> Hold:
    return lambda records: any(r.key == run_id.encode() for r in records)


async def test_out_of_order_appends_are_folded_in_offset_order(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path / "log")
    await ensure_topics(log, partitions=1)
    store = ProjectionStore(tmp_path / "state")
    journal = JournalProjection(store)
    writer = HeldWriter(await log.writer("w.p0", 0), _carries("first"))
    appender = JournalAppender(
        writer,
        topic=TOPICS.events,
        system="embedded",
        store=store,
        journal=journal,
        topic_names=NAMES,
        telemetry=Telemetry(),
        on_broken=lambda exc: None,
    )
    first = asyncio.create_task(appender.append([_event("first", 0)]))
    await writer.landed.wait()  # "first" is on the log; its append has not returned
    second = asyncio.create_task(appender.append([_event("second", 0)]))
    await asyncio.sleep(0)
    assert not second.done() and store.offset(TOPICS.events, 0) == 0
    writer.release.set()
    assert await first == [0] and await second == [1]
    assert journal.has_run("first") and journal.has_run("second")
    assert store.offset(TOPICS.events, 0) == 2
    await appender.close()
    store.close()
    await log.close()


async def test_a_revoke_between_commit_and_fold_leaves_no_hole(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path / "log")
    await ensure_topics(log, partitions=1)
    store = ProjectionStore(tmp_path / "state")
    journal = JournalProjection(store)
    broken: list[BaseException] = []
    writer = HeldWriter(await log.writer("w.p0", 0), _carries("first"))
    appender = JournalAppender(
        writer,
        topic=TOPICS.events,
        system="embedded",
        store=store,
        journal=journal,
        topic_names=NAMES,
        telemetry=Telemetry(),
        on_broken=broken.append,
    )
    first = asyncio.create_task(appender.append([_event("first", 0)]))
    await writer.landed.wait()
    second = asyncio.create_task(appender.append([_event("second", 0)]))
    await asyncio.sleep(0)
    first.cancel()  # the caller goes away: the append is not cancelled with it
    await asyncio.sleep(0)
    await appender.close()  # revoked while "first" landed but was never folded
    # broken (nothing more is appended), but closing reports nothing: the owner is stopping
    assert appender.broken is not None and broken == []
    assert first.cancelled() and second.done()
    assert store.offset(TOPICS.events, 0) == 0  # the watermark did not move past "first"
    await JournalSync(log, store, journal, topic=TOPICS.events, topic_names=NAMES).agree_with_log(0)
    assert journal.has_run("first") and not journal.has_run("second")
    store.close()
    await log.close()


class CountingModel(MockModel):
    def __init__(self) -> None:
        super().__init__()
        self.prompts: collections.Counter[str] = collections.Counter()
        self.sent: collections.defaultdict[str, asyncio.Event] = collections.defaultdict(
            asyncio.Event
        )

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> ModelResponse:
        prompt = str(request.messages[-1]["content"])
        self.prompts[prompt] += 1
        self.sent[prompt].set()
        return await super().complete(request, on_delta=on_delta)


def _app(model: CountingModel) -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", model)

    @app.agent
    async def steps(ctx: Context, name: str) -> list[str]:
        return [(await ctx.llm(f"{name} step {i}")).text for i in range(3)]

    return app


def _first_result_of(run_id: str) -> Hold:
    """Holds the first append that carries a model call result of ``run_id``."""
    seen: list[bool] = []

    def hold(records: Sequence[OutRecord]) -> bool:
        if seen:
            return False
        mine = [r for r in records if r.key == run_id.encode()]
        if any(("type", b"ModelCallCompleted") in r.headers for r in mine):
            seen.append(True)
            return True
        return False

    return hold


async def test_a_run_resumes_from_its_whole_journal_in_the_same_state_dir(tmp_path: Path) -> None:
    """Run a's first result lands but its append never returns; run b starts on the same
    partition (a driver that folded each caller's records as its append returned would fold
    b's past a's here), then the partition is revoked.  A worker on the same state directory
    resumes a from its whole journal: the answered call is not sent again."""
    model = CountingModel()
    app = _app(model)
    inner = await EmbeddedLog.open(tmp_path / "log")
    await ensure_topics(inner, partitions=1)
    log = HeldLog(inner, _first_result_of("a"))
    state = tmp_path / "state"
    async with worker_running(app, log, state):  # type: ignore[arg-type]
        client = Client(inner)
        await client.start_run("steps", "a", run_id="a")
        await log.writers[0].landed.wait()
        await client.start_run("steps", "b", run_id="b")
        with contextlib.suppress(TimeoutError):  # a driver that folds past a's record runs b
            await asyncio.wait_for(model.sent["b step 0"].wait(), 2.0)
    assert model.prompts["a step 0"] == 1
    async with worker_running(app, inner, state):
        client = Client(inner)
        assert await client.result("a") == [f"mock reply to: a step {i}" for i in range(3)]
        assert await client.result("b") == [f"mock reply to: b step {i}" for i in range(3)]
    assert all(n == 1 for n in model.prompts.values()), f"calls sent again: {model.prompts}"
    for run_id in ("a", "b"):
        report = await replay_run(inner, app, run_id)
        assert report.identical and report.ended
        events = [event_codec().decode(r) for r in await read_journal(inner, run_id)]
        assert [e.seq for e in events] == list(range(len(events)))
        assert sum(isinstance(e.payload, RunCompleted) for e in events) == 1
    await inner.close()


async def test_a_state_dir_of_an_older_format_is_refolded_from_the_log(tmp_path: Path) -> None:
    model = CountingModel()
    app = _app(model)
    log = await EmbeddedLog.open(tmp_path / "log")
    await ensure_topics(log, partitions=1)
    state = tmp_path / "state"
    async with worker_running(app, log, state):
        await Client(log).start_run("steps", "x", run_id="x")
        await Client(log).result("x")
    store = ProjectionStore(state)  # make the hole an older worker could leave
    journal = JournalProjection(store)
    keys = [k for k, _ in store.scan(b"jrn/x/")]
    store._db.delete(keys[2])
    store._db.delete(format_key(TOPICS.events, 0))
    assert len(journal.load("x")) == len(keys) - 1
    store.close()
    async with worker_running(app, log, state) as worker:
        assert len(worker.journal.load("x")) == len(keys)
    await log.close()


async def test_closing_an_appender_is_not_breaking_it(tmp_path: Path) -> None:
    """An owner closes its appender each time it restarts; if closing a healthy appender
    reported it broken, the report asked for the next restart, for ever (a Kafka writer whose
    producer died put a partition in that loop: its runs never went on)."""
    log = await EmbeddedLog.open(tmp_path / "log")
    await ensure_topics(log, partitions=1)
    store = ProjectionStore(tmp_path / "state")
    broken: list[BaseException] = []
    appender = JournalAppender(
        await log.writer("w.p0", 0),
        topic=TOPICS.events,
        system="embedded",
        store=store,
        journal=JournalProjection(store),
        topic_names=NAMES,
        telemetry=Telemetry(),
        on_broken=broken.append,
    )
    await appender.append([_event("first", 0)])  # its pump is running, idle now
    await appender.close()
    assert broken == []
    store.close()
    await log.close()
