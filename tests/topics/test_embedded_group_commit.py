"""Group commit on the embedded log: concurrent appends through one fenced writer share
transactions (one fence check, one COMMIT, one fsync under ``sync=full``), and every append a
caller saw acknowledged survives a SIGKILL of the process, intact and where it was told."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

from test_embedded_log import killed_midway

from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.port import OffsetCommit, OutRecord, TopicSpec

TASKS = 16


def value(task: int, n: int) -> bytes:
    return b"%d-%d:" % (task, n) + hashlib.sha256(b"%d-%d" % (task, n)).digest() * (1 + n % 40)


async def test_concurrent_appends_share_transactions(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path, sync="full")
    await log.create_topics([TopicSpec("gc", 2), TopicSpec("src", 1)])
    writer = await log.writer("w", 1)
    acked: dict[tuple[int, int], list[int]] = {}

    async def appender(task: int) -> None:
        for n in range(4):
            records = [OutRecord(b"t%d" % task, value(task, n))] * (1 + (task + n) % 3)
            commit = OffsetCommit("g", "src", 0, task * 4 + n + 1) if task == 0 else None
            acked[(task, n)] = await writer.append("gc", records, commit=commit)

    await asyncio.gather(*(appender(t) for t in range(50)))
    assert writer.transactions < 100, "appends were not grouped into transactions"
    by_offset = {r.offset: r.value for r in await log.read("gc", 1, 0, max_records=10_000)}
    for (task, n), offsets in acked.items():
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))  # contiguous
        assert all(by_offset[o] == value(task, n) for o in offsets)
    assert len(by_offset) == sum(map(len, acked.values()))  # nothing else, nothing twice
    assert await log.committed("g", "src", 0) == 4
    await log.close()


CRASHER = """
    import asyncio, hashlib, sys
    from wakeline.topics.embedded.log import EmbeddedLog
    from wakeline.topics.port import OutRecord, TopicSpec

    def value(task, n):
        return b"%d-%d:" % (task, n) + hashlib.sha256(b"%d-%d" % (task, n)).digest() * (1 + n % 40)

    async def appender(writer, task, start):
        n = start
        while True:
            [offset] = await writer.append("gc", [OutRecord(b"t%d" % task, value(task, n))])
            print(task, n, offset, "acked", flush=True)
            n += 1

    TASKS = int(sys.argv[3])

    async def main(data_dir, round_):
        log = await EmbeddedLog.open(data_dir, sync="full")
        await log.create_topics([TopicSpec("gc", 1)])
        writer = await log.writer("w", 0)
        print("ready", flush=True)
        start = int(round_) * 1_000_000
        await asyncio.gather(*(appender(writer, t, start) for t in range(TASKS)))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_acknowledged_group_committed_appends_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random(4321)
    acked: dict[int, tuple[int, int]] = {}  # offset -> (task, n)
    for round_ in range(3):
        printed = killed_midway(rng, CRASHER, str(tmp_path), str(round_), str(TASKS))
        for line in printed:  # printed after its append returned
            parts = line.split()
            if len(parts) != 4 or parts[3] != "acked":  # the kill cut this line short
                continue
            task, n, offset = map(int, parts[:3])
            assert offset not in acked, "an offset acknowledged twice"
            acked[offset] = (task, n)
    assert len(acked) > 100

    async def check() -> None:
        log = await EmbeddedLog.open(tmp_path)
        records = {r.offset: r for r in await log.read("gc", 0, 0, max_records=1_000_000)}
        for offset, (task, n) in acked.items():
            record = records.get(offset)
            assert record is not None, f"acknowledged append at {offset} was lost"
            assert record.key == b"t%d" % task and record.value == value(task, n)
        await log.close()

    asyncio.run(check())
