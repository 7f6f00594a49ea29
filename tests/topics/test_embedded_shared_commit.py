"""Group commit across writers on the embedded log: appends of different fenced writers (and
unfenced appends) that queue up together share one transaction (one ``COMMIT``, one fsync
under ``sync=full``), each keeps its own outcome, and every append a caller saw acknowledged
survives a SIGKILL of the process."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from pathlib import Path

import pytest
from test_embedded_log import killed_midway

from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.port import FencedError, OffsetCommit, OutRecord, TopicSpec

PARTITIONS = 4
TASKS = 24


def value(task: int, n: int) -> bytes:
    return b"%d-%d:" % (task, n) + hashlib.sha256(b"%d-%d" % (task, n)).digest() * (1 + n % 7)


async def _hold_write_thread(log: EmbeddedLog) -> tuple[threading.Event, asyncio.Future[None]]:
    """Block the log's write thread until the returned event is set, so that what is
    appended meanwhile queues up and goes in one batch."""
    loop = asyncio.get_running_loop()
    entered: asyncio.Future[None] = loop.create_future()
    release = threading.Event()

    def hold(_conn: object) -> None:
        loop.call_soon_threadsafe(entered.set_result, None)
        release.wait(10)

    held = asyncio.ensure_future(log.store.write(hold))
    await entered
    return release, held


async def _queued(log: EmbeddedLog, count: int) -> None:
    """Let the tasks just created run up to their appends (the topic's metadata is cached, so
    each queues its append without waiting on anything else), and check they are queued."""
    await asyncio.sleep(0)
    assert log.store.queued_writes == count


async def test_appends_of_several_writers_share_one_transaction(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path, sync="full")
    await log.create_topics([TopicSpec("gc", PARTITIONS), TopicSpec("src", 1)])
    writers = [await log.writer(f"w{p}", p) for p in range(PARTITIONS)]
    await log.meta("gc")
    release, held = await _hold_write_thread(log)
    before = log.store.transactions
    sent = [
        asyncio.ensure_future(
            w.append("gc", [OutRecord(b"k", value(p, n))], commit=OffsetCommit("g", "src", 0, n))
        )
        for n in range(3)
        for p, w in enumerate(writers)
    ]
    unfenced = asyncio.ensure_future(log.append("gc", [OutRecord(b"u", value(99, 0))]))
    await _queued(log, len(sent) + 1)
    release.set()
    await held
    acked = await asyncio.gather(*sent)
    [(u_partition, u_offset)] = await unfenced
    assert log.store.transactions == before + 1  # 13 appends, one COMMIT
    for i, offsets in enumerate(acked):
        n, p = divmod(i, PARTITIONS)
        assert offsets == [n]  # in the order they were queued
        [record] = await log.read("gc", p, n, max_records=1)
        assert record.value == value(p, n)
    assert u_offset == 3  # queued last, after its partition's writer's three
    [record] = await log.read("gc", u_partition, u_offset)
    assert record.value == value(99, 0)
    assert await log.committed("g", "src", 0) == 2
    await log.close()


async def test_a_fenced_append_fails_alone_in_a_shared_transaction(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path)
    await log.create_topics([TopicSpec("gc", 2)])
    old = await log.writer("a", 0)
    await log.writer("a", 0)  # a newer epoch fences ``old``
    other = await log.writer("b", 1)
    await log.meta("gc")
    release, held = await _hold_write_thread(log)
    fenced = asyncio.ensure_future(old.append("gc", [OutRecord(b"k", b"fenced")]))
    landed = asyncio.ensure_future(other.append("gc", [OutRecord(b"k", b"landed")]))
    await _queued(log, 2)
    before = log.store.transactions
    release.set()
    await held
    with pytest.raises(FencedError, match="fenced by a newer one"):
        await fenced
    assert await landed == [0]
    assert log.store.transactions == before + 1
    assert await log.end_offset("gc", 0) == 0  # the fenced append wrote nothing
    assert [r.value for r in await log.read("gc", 1, 0)] == [b"landed"]
    await log.close()


CRASHER = """
    import asyncio, hashlib, sys
    from wakeline.topics.embedded.log import EmbeddedLog
    from wakeline.topics.port import OutRecord, TopicSpec

    PARTITIONS, TASKS = int(sys.argv[3]), int(sys.argv[4])

    def value(task, n):
        return b"%d-%d:" % (task, n) + hashlib.sha256(b"%d-%d" % (task, n)).digest() * (1 + n % 7)

    async def appender(log, writer, task, start):
        n = start
        while True:
            record = OutRecord(b"t%d" % task, value(task, n))
            if writer is None:  # an unfenced append, to the partition of its key
                [(partition, offset)] = await log.append("gc", [record])
            else:
                partition, [offset] = writer.partition, await writer.append("gc", [record])
            txns, appends = log.store.transactions, log.store.appends
            print(task, n, partition, offset, txns, appends, "acked", flush=True)
            n += 1

    async def main(data_dir, round_):
        log = await EmbeddedLog.open(data_dir, sync="full")
        await log.create_topics([TopicSpec("gc", PARTITIONS)])
        writers = [await log.writer("w%d" % p, p) for p in range(PARTITIONS)] + [None]
        print("ready", flush=True)
        start = int(round_) * 1_000_000
        await asyncio.gather(
            *(appender(log, writers[t % len(writers)], t, start) for t in range(TASKS))
        )

    asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _acked(lines: list[str]) -> list[tuple[int, int, int, int, int, int]]:
    """The appends the child acknowledged (a line the kill cut short does not count)."""
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 7 and parts[6] == "acked":
            task, n, partition, offset, txns, appends = map(int, parts[:6])
            out.append((task, n, partition, offset, txns, appends))
    return out


def test_acknowledged_appends_of_many_writers_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random(2026)
    acked: dict[tuple[int, int], tuple[int, int]] = {}  # (partition, offset) -> (task, n)
    shared = False
    for round_ in range(3):
        printed = killed_midway(
            rng, CRASHER, str(tmp_path), str(round_), str(PARTITIONS), str(TASKS)
        )
        for task, n, partition, offset, txns, appends in _acked(printed):
            assert (partition, offset) not in acked, "an offset acknowledged twice"
            acked[(partition, offset)] = (task, n)
            shared = shared or appends > txns  # some transaction held several appends
    assert len(acked) > 100
    assert shared, "no transaction was shared: group commit was not exercised"

    async def check() -> None:
        log = await EmbeddedLog.open(tmp_path)
        for partition in range(PARTITIONS):
            records = {
                r.offset: r for r in await log.read("gc", partition, 0, max_records=1_000_000)
            }
            for (p, offset), (task, n) in acked.items():
                if p != partition:
                    continue
                record = records.get(offset)
                assert record is not None, f"acknowledged append at {p}@{offset} was lost"
                assert record.key == b"t%d" % task and record.value == value(task, n)
        await log.close()

    asyncio.run(check())
