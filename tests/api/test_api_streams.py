"""The event streams' shared followers (:mod:`wakeline.api.hub`) on a real embedded log, and
the limit of open streams per key over uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from test_api import VIEWER, Env, env, run_row, start  # noqa: F401 -- env is a fixture

from wakeline.api.hub import EventHub, OverflowedError
from wakeline.api.serve import serving
from wakeline.runtime import ensure_topics
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.port import OutRecord

TOPIC = "wakeline.events"


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EmbeddedLog]:
    log = await EmbeddedLog.open(tmp_path / "log")
    await ensure_topics(log, partitions=1)
    try:
        yield log
    finally:
        await log.close()


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


async def test_open_streams_are_limited_per_key(env: Env) -> None:  # noqa: F811
    run_id = await start(env.http, "napper", {"naps": 1, "seconds": 30})
    await run_row(env.http, run_id, status="waiting")
    slots = env.api.state.api.streams
    slots.per_key = 1
    url = f"/v1/runs/{run_id}/events"
    async with serving(env.api) as base, httpx.AsyncClient(base_url=base, timeout=30) as live:
        async with live.stream("GET", url, headers=VIEWER) as first:
            assert first.status_code == 200
            second = await live.get(url, headers=VIEWER)
            assert second.status_code == 429 and second.headers["retry-after"] == "5"
            assert "key 'ann' has 1 event streams open, the most it may" in second.text
            released = asyncio.create_task(slots.wait_released())
        await asyncio.wait_for(released, 10.0)  # the server saw the first one go
        assert slots.open("ann") == 0
        async with live.stream("GET", url, headers=VIEWER) as third:
            assert third.status_code == 200
