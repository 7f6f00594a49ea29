"""Followers shared per partition (:mod:`wakeline.following`): one reader pushes history then
live records and drops a slow subscriber, keyed subscriptions get only
their run's records, a client that falls behind reads on from the log, and many runs followed
by one client cost one reader per partition, not one per run (a lone watch reads alone)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from wakeline import App, Context
from wakeline.client import Client
from wakeline.following import EventHub, OverflowedError
from wakeline.providers.mock import MockModel
from wakeline.runtime import ensure_topics
from wakeline.testing.harness import local_runtime
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.port import Log, OutRecord, Record

TOPIC = "wakeline.events"


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EmbeddedLog]:
    log = await EmbeddedLog.open(tmp_path / "log")
    await ensure_topics(log, partitions=1)
    try:
        yield log
    finally:
        await log.close()


async def read_until(sub: Any, offset: int, last: bytes) -> list[Record]:
    got: list[Record] = []
    while not got or got[-1].value != last:
        records = await sub.read(TOPIC, 0, offset, timeout_s=5.0)
        got += records
        offset = records[-1].offset + 1 if records else offset
    return got


async def test_a_keyed_subscription_is_pushed_only_its_keys_records(log: EmbeddedLog) -> None:
    hub = EventHub(log, poll_s=0.05)
    mine, everything = hub.subscribe(key=b"run-a"), hub.subscribe()
    try:
        assert await mine.read(TOPIC, 0, 0) == [] and await everything.read(TOPIC, 0, 0) == []
        await log.append(TOPIC, [OutRecord(b"run-b", b"b0"), OutRecord(b"run-a", b"a0")])
        await log.append(TOPIC, [OutRecord(b"run-b", b"b1"), OutRecord(b"run-a", b"a1")])
        assert [r.value for r in await read_until(mine, 0, b"a1")] == [b"a0", b"a1"]
        all_values = [r.value for r in await read_until(everything, 0, b"a1")]
        assert all_values == [b"b0", b"a0", b"b1", b"a1"]
        assert hub.followers == 1
    finally:
        mine.close()
        everything.close()
        await hub.close()


async def test_a_resyncing_subscription_that_overflows_reads_on_from_the_log(
    log: EmbeddedLog,
) -> None:
    hub = EventHub(log, poll_s=0.05, queue_batches=2)
    slow, fast = hub.subscribe(key=b"k", resync=True), hub.subscribe(key=b"k")
    try:
        assert await slow.read(TOPIC, 0, 0) == [] and await fast.read(TOPIC, 0, 0) == []
        values = [b"v%d" % i for i in range(8)]
        for value in values:  # one batch each, while ``slow`` does not read
            await log.append(TOPIC, [OutRecord(b"k", value)])
            await read_until(fast, 0, value)  # the follower has pushed it
        assert slow.overflowed.is_set()
        assert [r.value for r in await read_until(slow, 0, b"v7")] == values  # nothing lost
        await log.append(TOPIC, [OutRecord(b"k", b"after")])
        got = await read_until(slow, 8, b"after")  # and it is pushed to again
        assert [r.value for r in got] == [b"after"]
    finally:
        slow.close()
        fast.close()
        await hub.close()


class CountingLog:
    """The client's log, counting reads per topic (a test double at the port)."""

    def __init__(self, inner: Log) -> None:
        self.inner = inner
        self.reads: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def read(self, topic: str, *args: Any, **kwargs: Any) -> list[Record]:
        self.reads[topic] += 1
        return await self.inner.read(topic, *args, **kwargs)


def chatty() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel(latency_s=0.02))  # so the runs are followed while they run

    @app.agent
    async def talk(ctx: Context, n: int) -> int:
        for i in range(5):
            await ctx.llm(f"call {i} of run {n}")
        return n

    return app


async def test_one_client_following_many_runs_reads_each_partition_once_not_per_run(
    tmp_path: Path,
) -> None:
    runs = 60
    async with local_runtime(chatty(), tmp_path / "data", partitions=2) as rt:
        counting = CountingLog(rt.log)
        client = Client(counting, topics=rt.topics)  # type: ignore[arg-type]
        following = []
        for n in range(runs):  # each followed from its start, while it runs
            handle = await rt.client.start_run("talk", n)
            result = client.result(handle.run_id, from_offset=handle.from_offset)
            following.append(asyncio.create_task(result))
        assert await asyncio.wait_for(asyncio.gather(*following), 120) == list(range(runs))
        await client.aclose()
    # each run's watch reads its history once from the log; after that each partition's one
    # follower reads for every run on it.  (With a reader per run, each run reads again each
    # time its partition changes: about 1,300 reads here.)
    reads = counting.reads[rt.topics.events] + counting.reads[rt.topics.notices]
    assert reads < 6 * runs, counting.reads  # about 4 per run (the first watch reads alone)


async def append(log: EmbeddedLog, *values: bytes) -> None:
    await log.append(TOPIC, [OutRecord(b"k", v) for v in values])


async def test_one_follower_pushes_history_then_live_and_drops_a_slow_subscriber(
    log: EmbeddedLog,
) -> None:
    hub = EventHub(log, poll_s=0.05, queue_batches=2)
    await append(log, b"h0", b"h1")  # history, before anyone follows
    fast, slow, late = hub.subscribe(), hub.subscribe(), hub.subscribe()
    try:
        assert await slow.read(TOPIC, 0, 2) == []  # joins at the end; never reads again
        got: list[bytes] = []
        offset = 0
        for batch in (b"a", b"b", b"c", b"d"):  # one batch each: the fast one waits for it
            await append(log, batch)
            while not got or got[-1] != batch:
                records = await fast.read(TOPIC, 0, offset, timeout_s=5.0)
                got += [r.value for r in records]
                offset = records[-1].offset + 1 if records else offset
        assert got == [b"h0", b"h1", b"a", b"b", b"c", b"d"]  # in order, each once
        assert hub.followers == 1  # the partition is read once for all of them
        await asyncio.wait_for(slow.overflowed.wait(), 5.0)  # 4 batches > its queue of 2
        with pytest.raises(OverflowedError, match="more than 2 batches"):
            await slow.read(TOPIC, 0, 2)
        # a subscriber that joins late gets the history from the log, then live, once each
        records = await late.read(TOPIC, 0, 0)
        while records[-1].value != b"d":
            records += await late.read(TOPIC, 0, records[-1].offset + 1, timeout_s=5.0)
        assert [r.value for r in records] == got
    finally:
        for subscription in (fast, slow, late):
            subscription.close()
        assert hub.followers == 0  # the last one to leave stops the follower
        await hub.close()
