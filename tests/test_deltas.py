"""Live deltas of streamed model calls: published off the call's path, merged into watch.

The journal records only the final message; subscribers see deltas of calls still open, in
order, before the call's result, and never a delta of a call whose result they already saw.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from slow_stream import SlowStream

from wakeline import App
from wakeline.client import Client, RunUpdate
from wakeline.deltas import DeltaFollower, DeltaPublisher
from wakeline.runtime import ensure_topics
from wakeline.schemas.deltas import Delta, delta_codec
from wakeline.schemas.events import (
    Event,
    ModelCallCompleted,
    ModelCallRequested,
    RunStarted,
)
from wakeline.schemas.usage import Usage
from wakeline.testing.harness import LocalRuntime, local_runtime, worker_running
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import Log, OutRecord, UnknownTopicError
from wakeline.topics.specs import DEFAULT_TOPICS, Topics


def make_app(delay_s: float = 0.1) -> App:
    app = App(default_provider="slow", default_model="slow-1")
    app.provider("slow", SlowStream(delay_s))

    @app.agent
    async def talk(ctx: Any, prompt: str) -> str:
        return str((await ctx.llm(prompt, stream=True)).text)

    @app.agent
    async def talk_plain(ctx: Any, prompt: str) -> str:
        return str((await ctx.llm(prompt)).text)

    @app.agent
    async def chorus(ctx: Any, prompt: str) -> list[str]:
        a, b = await asyncio.gather(
            ctx.llm(f"{prompt} a", stream=True), ctx.llm(f"{prompt} b", stream=True)
        )
        return [a.text, b.text]

    return app


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    async with local_runtime(make_app(), tmp_path / "data") as runtime:
        yield runtime


async def collect(client: Client, run_id: str, from_offset: int = 0) -> list[RunUpdate]:
    updates = []
    async for update in client.watch(run_id, from_offset=from_offset, deltas=True, poll_s=0.05):
        updates.append(update)
    return updates


def final_text(event: Event) -> str:
    assert isinstance(event.payload, ModelCallCompleted)
    return str(json.loads(event.payload.message)["content"])


def check_placement(updates: Sequence[RunUpdate]) -> dict[int, list[Delta]]:
    """Deltas come between their call's request and its result; per call, in order."""
    requested: set[int] = set()
    ended: set[int] = set()
    by_call: dict[int, list[Delta]] = {}
    for update in updates:
        if update.event is not None:
            payload = update.event.payload
            if isinstance(payload, ModelCallRequested):
                requested.add(update.event.seq)
            step = getattr(payload, "step", None)
            if isinstance(step, int):
                ended.add(step)
        elif update.delta is not None:
            delta = update.delta
            assert delta.seq in requested and delta.seq not in ended, delta
            by_call.setdefault(delta.seq, []).append(delta)
    for deltas in by_call.values():
        indexes = [d.index for d in deltas]
        assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)
    return by_call


async def test_a_live_subscriber_sees_the_text_before_the_result(rt: LocalRuntime) -> None:
    handle = await rt.client.start_run("talk", "otters")
    updates = await collect(rt.client, handle.run_id, handle.from_offset)
    by_call = check_placement(updates)
    events = [u.event for u in updates if u.event is not None]
    completed = next(e for e in events if isinstance(e.payload, ModelCallCompleted))
    (deltas,) = by_call.values()
    assert [d.index for d in deltas] == list(range(8))  # every delta, in order
    assert "".join(d.text for d in deltas) == final_text(completed)
    assert all(d.run_id == handle.run_id and d.writer == rt.worker.worker_id for d in deltas)
    # the deltas arrived while the call was streaming, not all at its end
    assert deltas[-1].time_ms - deltas[0].time_ms >= 400

    # a subscriber that joins after the call's result sees no delta of it
    late = await collect(rt.client, handle.run_id)
    assert [u.event for u in late if u.event is not None] == events
    assert not [u for u in late if u.delta is not None]
    # without deltas=True: only events and notices, as before
    plain = [u async for u in rt.client.watch(handle.run_id)]
    assert all(u.delta is None for u in plain)


async def test_parallel_streams_keep_their_own_order(rt: LocalRuntime) -> None:
    handle = await rt.client.start_run("chorus", "kelp")
    updates = await collect(rt.client, handle.run_id, handle.from_offset)
    by_call = check_placement(updates)
    completions = {
        u.event.payload.step: final_text(u.event)
        for u in updates
        if u.event is not None and isinstance(u.event.payload, ModelCallCompleted)
    }
    assert sorted(by_call) == sorted(completions)
    for seq, deltas in by_call.items():
        assert "".join(d.text for d in deltas) == completions[seq]


async def test_a_subscriber_joining_mid_call_gets_the_rest_only(tmp_path: Path) -> None:
    async with local_runtime(make_app(delay_s=0.15), tmp_path / "data") as rt:
        handle = await rt.client.start_run("talk", "seals")
        await wait_for_deltas(rt.log, handle.run_id, at_least=2)
        updates = await collect(rt.client, handle.run_id)
        (deltas,) = check_placement(updates).values()
        completed = next(
            u.event
            for u in updates
            if u.event is not None and isinstance(u.event.payload, ModelCallCompleted)
        )
        assert deltas and deltas[0].index >= 2  # what was streamed before it joined is gone
        assert [d.index for d in deltas] == list(range(deltas[0].index, 8))
        assert final_text(completed).endswith("".join(d.text for d in deltas))


async def wait_for_deltas(
    log: Log, run_id: str, *, at_least: int, topic: str = DEFAULT_TOPICS.deltas
) -> None:
    """Return once ``at_least`` deltas of the run were published: follows the run's deltas
    partition (each read returns as soon as something is appended)."""
    partition = partition_for(run_id.encode(), await log.partition_count(topic))
    offset, seen = 0, 0
    try:
        async with asyncio.timeout(10):
            while seen < at_least:
                records = await log.read(topic, partition, offset, timeout_s=1.0)
                for record in records:
                    offset = record.offset + 1
                    seen += delta_codec().decode(record.value).run_id == run_id
    except TimeoutError:
        raise AssertionError(f"run {run_id}: {seen} deltas published, not {at_least}") from None


async def read_deltas(log: Log, run_id: str, topic: str = DEFAULT_TOPICS.deltas) -> list[Delta]:
    out = []
    for p in range(await log.partition_count(topic)):
        for record in await log.read(topic, p, 0):
            delta = delta_codec().decode(record.value)
            if delta.run_id == run_id:
                out.append(delta)
    return out


def normalized(events: Sequence[Event]) -> list[tuple[str, Any]]:
    """Events without what differs between any two runs (ids, times, writers, latency)."""
    out = []
    for event in events:
        payload: Any = event.payload
        if isinstance(payload, RunStarted):
            payload = dataclasses.replace(payload, agent="", command_id="", code_digest="")
        elif isinstance(payload, ModelCallRequested):
            payload = dataclasses.replace(payload, stream=False)
        elif isinstance(payload, ModelCallCompleted):
            payload = dataclasses.replace(payload, latency_us=0)
        out.append((event.type, payload))
    return out


async def test_the_journal_is_unchanged_by_streaming(rt: LocalRuntime) -> None:
    streamed = await rt.client.start_run("talk", "orcas")
    plain = await rt.client.start_run("talk_plain", "orcas")
    assert await rt.client.result(streamed.run_id) == await rt.client.result(plain.run_id)
    with_stream = [e async for e in rt.client.events(streamed.run_id)]
    without = [e async for e in rt.client.events(plain.run_id)]
    assert normalized(with_stream) == normalized(without)
    requests = [e.payload for e in with_stream if isinstance(e.payload, ModelCallRequested)]
    assert [r.stream for r in requests] == [True]
    # the deltas went to their own topic, none to the journal's
    assert len(await read_deltas(rt.log, streamed.run_id)) == 8
    assert await read_deltas(rt.log, plain.run_id) == []


async def test_no_deltas_topic_never_breaks_a_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    topics = Topics(deltas="wakeline.no-such-deltas")
    log = await EmbeddedLog.open(tmp_path / "data")
    try:
        await ensure_topics(log)  # creates wakeline.deltas, not the worker's deltas topic
        async with worker_running(make_app(0.02), log, tmp_path / "state", topics=topics):
            client = Client(log, topics=topics)
            handle = await client.start_run("talk", "krill")
            with caplog.at_level(logging.WARNING, logger="wakeline.deltas"):
                updates = await collect(client, handle.run_id, handle.from_offset)
            assert updates[-1].event is not None and updates[-1].event.type == "RunCompleted"
            assert not [u for u in updates if u.delta is not None]
            assert "could not be appended" in caplog.text
            assert "no live deltas" in caplog.text
    finally:
        await log.close()


@pytest.mark.kafka
async def test_deltas_flow_on_kafka(kafka_broker: Any, tmp_path: Path) -> None:
    from wakeline.topics.kafka.log import KafkaLog

    prefix = f"deltas-{uuid.uuid4().hex[:8]}"
    names = ("commands", "events", "notices", "deadletter", "ledger", "deltas")
    topics = Topics(**{name: f"{prefix}.{name}" for name in names})
    log = await KafkaLog.open(kafka_broker.bootstrap)
    try:
        await ensure_topics(log, partitions=2, topics=topics)
        async with worker_running(make_app(), log, tmp_path / "state", topics=topics):
            client = Client(log, topics=topics)
            handle = await client.start_run("talk", "otters")
            updates = await collect(client, handle.run_id, handle.from_offset)
            (deltas,) = check_placement(updates).values()
            completed = next(
                u.event
                for u in updates
                if u.event is not None and isinstance(u.event.payload, ModelCallCompleted)
            )
            assert "".join(d.text for d in deltas) == final_text(completed)
            assert [d.index for d in deltas] == list(range(8))
    finally:
        await log.close()


# ---------------------------------------------------------------------------- the publisher


class SlowLog:
    """Records appends; each takes a while (or fails)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.batches: list[list[Delta]] = []
        self.fail = fail

    async def append(self, topic: str, records: Sequence[OutRecord]) -> list[tuple[int, int]]:
        await asyncio.sleep(0.02)
        if self.fail:
            raise UnknownTopicError(topic)
        self.batches.append([delta_codec().decode(r.value) for r in records])
        return [(0, i) for i in range(len(records))]


async def test_the_publisher_batches_in_order_and_never_blocks() -> None:
    fake = SlowLog()
    publisher = DeltaPublisher(cast(Log, fake), "t", writer="w", max_pending=150)
    sink_a, sink_b = publisher.sink("run", 3), publisher.sink("run", 5)
    for i in range(100):  # returns at once: the appends happen in the background
        sink_a(f"a{i}")
        sink_b(f"b{i}")
    sink_a("")  # empty deltas are skipped
    await publisher.flush()
    sent = [d for batch in fake.batches for d in batch]
    assert len(fake.batches) < 10  # batched
    assert publisher.dropped == 50 and publisher.published == 150  # the queue is bounded
    assert [d.text for d in sent if d.seq == 3] == [f"a{i}" for i in range(75)]
    assert [d.index for d in sent if d.seq == 5] == list(range(75))
    sink_a("later")  # a new drain task starts when needed
    await publisher.flush()
    assert fake.batches[-1][-1].text == "later" and fake.batches[-1][-1].index == 100


async def test_a_failing_log_only_drops_deltas(caplog: pytest.LogCaptureFixture) -> None:
    publisher = DeltaPublisher(cast(Log, SlowLog(fail=True)), "t", writer="w")
    sink = publisher.sink("run", 1)
    with caplog.at_level(logging.WARNING, logger="wakeline.deltas"):
        sink("x")
        sink("\ud800")  # cannot be encoded: dropped alone
        await publisher.flush()
    assert publisher.dropped == 2 and publisher.published == 0
    assert "could not be appended" in caplog.text


# ---------------------------------------------------------------------------- the merge


def event(seq: int, payload: Any) -> Event:
    return Event("r", seq, 0, "w", payload)


def delta(seq: int, index: int) -> Delta:
    return Delta("r", seq, index, 0, "w", f"{seq}.{index}")


def test_the_follower_places_deltas_around_their_calls() -> None:
    follower = DeltaFollower(cast(Log, None), "t", "r", 0, 0)
    request = ModelCallRequested("p", "m", "d", "{}", stream=True)
    plain = ModelCallRequested("p", "m", "d", "{}", stream=False)
    # a delta read before its request event is held, then yielded after it
    follower.add([delta(1, 0)])
    assert follower.ready() == []
    follower.after(event(0, RunStarted("a", "{}")))
    follower.after(event(1, request))
    assert follower.streaming
    assert follower.ready() == [delta(1, 0)]
    # the last deltas of a call are yielded before its result, none after it
    follower.add([delta(1, 1), delta(1, 2)])
    result = event(2, ModelCallCompleted(1, "p", "m", "id", "m", "stop", "{}", Usage(), 0))
    assert follower.closes([result])
    assert follower.before(result) == [delta(1, 1), delta(1, 2)]
    follower.after(result)
    follower.add([delta(1, 3)])
    assert follower.ready() == [] and not follower.streaming
    # a call that does not stream gets no delta
    follower.after(event(3, plain))
    follower.add([delta(3, 0)])
    assert follower.ready() == []
    # an unstreamed result or another step's event passes through
    assert follower.before(event(4, RunStarted("a", "{}"))) == []
