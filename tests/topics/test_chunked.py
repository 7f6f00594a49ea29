"""Records over the log's record limit are stored in chunks and read back whole, on both
backends (Kafka's broker refuses a record over 1 MiB, and so does the embedded log)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from backends import Backend, backend_for, backend_params, runtime_for

from wakeline import App, Context
from wakeline.providers.mock import MockModel
from wakeline.replay import read_journal, replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.topics.chunked import POINTER, ChunkedLog
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import (
    AssignmentListener,
    LogError,
    OffsetCommit,
    OutRecord,
    RecordTooLargeError,
)

BIG = 3 * 1024 * 1024 + 17  # over both backends' default limit of 1 MiB


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return backend_for(request, tmp_path / "data", "chunked")


@pytest.fixture()
async def log(backend: Backend) -> AsyncIterator[ChunkedLog]:
    opened = await backend.create(partitions=2)
    assert isinstance(opened, ChunkedLog)
    try:
        yield opened
    finally:
        await opened.close()


class Quiet(AssignmentListener):
    def __init__(self) -> None:
        self.assigned = asyncio.Event()

    async def on_assigned(self, partitions: frozenset[int]) -> None:
        self.assigned.set()

    async def on_revoked(self, partitions: frozenset[int]) -> None:
        return None


async def test_a_record_over_the_limit_is_written_in_chunks_and_read_back_whole(
    log: ChunkedLog, backend: Backend
) -> None:
    topic = backend.topics.events
    big = os.urandom(BIG)
    records = [
        OutRecord(b"k", b"small one", (("type", b"A"),)),
        OutRecord(b"k", big, (("type", b"B"), ("sig", b"s1"))),
        OutRecord(b"k", b"small two"),
    ]
    writer = await log.writer("w-1", 1)
    with pytest.raises(RecordTooLargeError):  # the backend itself refuses it
        await (await log.inner.writer("w-raw", 0)).append(topic, records[1:2])
    offsets = await writer.append(topic, records, commit=OffsetCommit("g", topic, 1, 5))
    back = await log.read(topic, 1, offsets[0])
    assert [r.value for r in back] == [b"small one", big, b"small two"]
    assert [r.offset for r in back] == offsets
    assert back[1].headers == (("type", b"B"), ("sig", b"s1"))
    raw = await log.inner.read(topic, 1, offsets[1], max_records=1)
    assert raw[0].value == b"" and raw[0].header(POINTER) is not None
    assert await log.committed("g", topic, 1) == 5
    assert hashlib.sha256(back[1].value).digest() == hashlib.sha256(big).digest()


async def test_unfenced_appends_and_group_polls_get_records_whole(
    log: ChunkedLog, backend: Backend
) -> None:
    topic = backend.topics.commands
    big = os.urandom(BIG)
    [(partition, offset)] = await log.append(topic, [OutRecord(b"run-9", big)])
    assert partition == partition_for(b"run-9", 2)
    assert [r.value for r in await log.read(topic, partition, offset)] == [big]
    listener = Quiet()
    consumer = log.consumer(f"{backend.group}-chunks", topic, listener, session_timeout_s=6)
    try:
        seen: list[bytes] = []
        while not seen:
            seen = [r.value for r in await consumer.poll(1.0)]
        assert seen == [big]
    finally:
        await consumer.close()


async def test_chunks_that_do_not_match_their_pointer_raise(
    log: ChunkedLog, backend: Backend
) -> None:
    topic = backend.topics.events
    writer = await log.writer("w-1", 0)
    [offset] = await writer.append(topic, [OutRecord(b"k", b"x" * (log.inline_max + 1))])
    pointer = (await log.inner.read(topic, 0, offset))[0]
    header = pointer.header(POINTER)
    assert header is not None
    forged = header.replace(header[:8], b"00000000", 1)  # another sha256
    inner = await log.inner.writer("w-2", 0)  # fences w-1: a raw writer, as a forger would
    [bad] = await inner.append(topic, [OutRecord(b"k", b"", ((POINTER, forged),))])
    with pytest.raises(LogError, match="missing or do not match"):
        await log.read(topic, 0, bad)


def big_app() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel(replies=lambda r: f"read {len(r.messages[0]['content'])}"))

    @app.agent
    async def reader(ctx: Context, words: int) -> str:
        document = " ".join(f"w{i}" for i in range(words))  # the run's input stays small
        return (await ctx.llm(f"summarize: {document}")).text

    return app


@pytest.fixture(params=backend_params())
def on_backend(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


async def test_a_request_larger_than_the_record_limit_is_journaled_and_replayed(
    on_backend: pytest.FixtureRequest, tmp_path: Path
) -> None:
    words = BIG // 7
    document = " ".join(f"w{i}" for i in range(words))
    async with runtime_for(on_backend, big_app(), tmp_path / "data", "bigreq") as rt:
        handle = await rt.client.start_run("reader", words)
        reply = await asyncio.wait_for(rt.client.result(handle.run_id), 120)
        assert reply == f"read {len('summarize: ' + document)}"
        raw = await read_journal(rt.log, handle.run_id, topics=rt.topics)
        assert isinstance(rt.log, ChunkedLog)
        inner_events = await read_journal(rt.log.inner, handle.run_id, topics=rt.topics)
    events = [event_codec().decode(r) for r in raw]
    assert [e.type for e in events][:3] == [
        "RunStarted",
        "ModelCallRequested",
        "ModelCallCompleted",
    ]
    assert len(raw[1]) > 1024 * 1024 and inner_events[1] == b""  # a pointer in the log itself
    report = replay_journal(big_app(), handle.run_id, raw)
    assert report.identical and report.ended, report
