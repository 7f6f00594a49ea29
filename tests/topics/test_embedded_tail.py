"""In-process reads of the embedded log: a waiting read woken by this log's own append takes
the new records from its tail (no trip to the read thread) exactly as SQLite holds them; a
read of records that are there already reads the database (an out-of-band change is seen); a
read that would find nothing asks SQLite on the loop (one key lookup) instead of the read
thread; what other logs append is always read from the database."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from wakeline.topics.embedded.log import DB_FILENAME, EmbeddedLog
from wakeline.topics.embedded.tail import Tail
from wakeline.topics.port import OutRecord, TopicSpec


def rec(n: int) -> OutRecord:
    return OutRecord(b"k%d" % n, b"value %d" % n, (("type", b"T"), ("n", b"%d" % n)))


async def test_a_waiting_read_takes_own_appends_from_the_tail_as_the_database_holds_them(
    tmp_path: Path,
) -> None:
    log = await EmbeddedLog.open(tmp_path)
    await log.create_topics([TopicSpec("t", 2)])
    writer = await log.writer("w", 1)
    for n in range(2):
        await writer.append("t", [rec(n)])
    trips, hits = log.store.read_trips, log.tail.hits
    waiting = asyncio.ensure_future(log.read("t", 1, 2, timeout_s=30))
    await asyncio.sleep(0)  # it found nothing at offset 2 (asking SQLite on the loop)
    assert not waiting.done()
    await writer.append("t", [rec(2), rec(3)])
    mine = await waiting
    assert (log.store.read_trips, log.tail.hits) == (trips, hits + 1)  # no read thread
    other = await EmbeddedLog.open(tmp_path)  # has appended nothing: reads the database
    theirs = await other.read("t", 1, 2)
    assert other.tail.hits == 0
    assert mine == theirs and [r.offset for r in mine] == [2, 3]
    assert mine[0].headers == (("type", b"T"), ("n", b"2")) and mine[0].timestamp_ms > 0
    await other.close()
    await log.close()


async def test_a_read_of_what_is_there_reads_the_database_even_if_changed_behind_the_log(
    tmp_path: Path,
) -> None:
    log = await EmbeddedLog.open(tmp_path)
    await log.create_topics([TopicSpec("t", 1)])
    await log.append("t", [rec(0)])
    with sqlite3.connect(tmp_path / DB_FILENAME) as db:  # an out-of-band change (tampering)
        db.execute("UPDATE records SET value = ?", (b"changed",))
    hits = log.tail.hits
    assert [r.value for r in await log.read("t", 0, 0)] == [b"changed"]
    assert [r.value for r in await log.read("t", 0, 0, timeout_s=1)] == [b"changed"]
    assert log.tail.hits == hits
    await log.close()


async def test_a_foreign_append_between_own_ones_is_read_from_the_database(
    tmp_path: Path,
) -> None:
    log = await EmbeddedLog.open(tmp_path)
    await log.create_topics([TopicSpec("t", 1)])
    other = await EmbeddedLog.open(tmp_path)
    for n in range(3):
        await log.append("t", [rec(n)])
    await other.append("t", [rec(3)])  # log's tail does not know offset 3
    await log.append("t", [rec(4)])
    expected = await other.read("t", 0, 0)
    assert [r.value for r in expected] == [rec(n).value for n in range(5)]
    for offset in range(5):
        assert await log.read("t", 0, offset) == expected[offset:]
    await other.close()
    await log.close()


async def test_a_read_at_the_end_asks_the_database_on_the_loop(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path)
    await log.create_topics([TopicSpec("t", 1)])
    await log.append("t", [rec(0)])
    other = await EmbeddedLog.open(tmp_path)
    await other.meta("t")
    trips = other.store.read_trips
    assert await other.read("t", 0, 1) == []  # nothing there: no trip to the read thread
    assert await other.read("t", 0, 1, timeout_s=0.01) == []
    assert other.store.read_trips == trips
    await log.append("t", [rec(1)])  # another log's append is seen at once
    [found] = await other.read("t", 0, 1)
    assert found.value == rec(1).value and other.store.read_trips == trips + 1
    await other.close()
    await log.close()


def test_the_tail_keeps_a_bounded_run_of_consecutive_offsets() -> None:
    tail = Tail(max_records=3, max_bytes=1000)
    tail.add("t", 0, [0, 1], [rec(0), rec(1)], 7)
    tail.add("t", 0, [2, 3], [rec(2), rec(3)], 8)
    assert tail.read("t", 0, 0, 10) is None  # dropped: at most 3 records
    held = tail.read("t", 0, 1, 10)
    assert held is not None and [(r.offset, r.timestamp_ms) for r in held] == [
        (1, 7),
        (2, 8),
        (3, 8),
    ]
    assert tail.read("t", 0, 4, 10) is None  # past the end: not known here
    tail.add("t", 0, [9], [rec(9)], 9)  # a gap (another writer): a new run
    assert tail.read("t", 0, 2, 10) is None
    again = tail.read("t", 0, 9, 1)
    assert again is not None and [r.offset for r in again] == [9]
    big = Tail(max_records=100, max_bytes=10)
    big.add("t", 0, [0, 1], [OutRecord(None, b"x" * 8), OutRecord(None, b"y" * 8)], 1)
    kept = big.read("t", 0, 1, 10)
    assert big.read("t", 0, 0, 10) is None and kept is not None and len(kept) == 1
