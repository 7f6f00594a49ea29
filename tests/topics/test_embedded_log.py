"""Embedded-only tests of the SQLite log: several processes, SIGKILL, properties, edge cases."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from listeners import CallLog

from wakeline.topics.embedded.groups import EmbeddedConsumer
from wakeline.topics.embedded.log import DB_FILENAME, EmbeddedLog
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import (
    FencedError,
    LogUnavailableError,
    OffsetCommit,
    OutRecord,
    RecordTooLargeError,
    TopicSpec,
    UnknownTopicError,
)

REPO = Path(__file__).resolve().parents[2]


def spawn(script: str, *args: str) -> subprocess.Popen[str]:
    """Run ``script`` in a fresh interpreter that imports this checkout of wakeline."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def killed_midway(rng: random.Random, script: str, *args: str) -> list[str]:
    """Run ``script`` (which prints ``ready``, then a line per acknowledged step), SIGKILL it
    0.2 to 0.6 s after it is ready, and return every line it printed after ``ready``."""
    child = spawn(script, *args)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready", child.stderr
    kill_at = time.monotonic() + rng.uniform(0.2, 0.6)
    lines = []
    while time.monotonic() < kill_at:
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        lines.append(line)
    child.send_signal(signal.SIGKILL)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return lines + out.split("\n")


# -- several processes -----------------------------------------------------------------------

APPENDER = """
    import asyncio, sys, time
    from wakeline.topics.embedded.log import EmbeddedLog
    from wakeline.topics.port import OutRecord

    async def main(data_dir: str, tag: str, n: int, start: float) -> None:
        log = await EmbeddedLog.open(data_dir)
        await asyncio.sleep(start - time.time())  # start together
        i = 0
        while i < n:
            size = 1 + i % 3
            batch = [OutRecord(None, f"{tag}:{j}".encode()) for j in range(i, min(n, i + size))]
            await log.append("mp", batch)
            i += len(batch)
        await log.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
"""


async def test_processes_appending_concurrently_get_dense_unique_offsets(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path)
    await log.create_topics([TopicSpec("mp", 1)])
    n = 1500
    start = time.time() + 1.5
    procs = [spawn(APPENDER, str(tmp_path), tag, str(n), str(start)) for tag in ("a", "b")]
    local = [OutRecord(None, f"c:{j}".encode()) for j in range(n)]
    await asyncio.sleep(start - time.time())
    for record in local:  # this process writes too, through its own connection
        await log.append("mp", [record])
    for proc in procs:
        _, err = await asyncio.to_thread(proc.communicate, timeout=120)
        assert proc.returncode == 0, err
    records = await log.read("mp", 0, 0, max_records=10 * n)
    assert [r.offset for r in records] == list(range(3 * n))
    assert await log.end_offset("mp", 0) == 3 * n
    values = [r.value.decode() for r in records]
    assert len(set(values)) == 3 * n
    for tag in "abc":  # each writer's records kept their order
        assert [v for v in values if v.startswith(tag)] == [f"{tag}:{j}" for j in range(n)]
    switches = sum(a[0] != b[0] for a, b in itertools.pairwise(values))
    assert switches > 20  # the writers really interleaved
    await log.close()


CONSUMER = """
    import asyncio, sys
    from wakeline.topics.embedded.log import EmbeddedLog

    class Quiet:
        async def on_assigned(self, partitions):
            print("assigned", sorted(partitions), flush=True)

        async def on_revoked(self, partitions):
            print("revoked", sorted(partitions), flush=True)

    async def main(data_dir: str, session_s: float) -> None:
        log = await EmbeddedLog.open(data_dir)
        consumer = log.consumer(
            "g", "grp", Quiet(), session_timeout_s=session_s, instance_id="child"
        )
        while True:
            await consumer.poll(0.1)

    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


async def child_with_all_partitions(
    log: EmbeddedLog, tmp_path: Path, session_s: float
) -> tuple[subprocess.Popen[str], EmbeddedConsumer, CallLog]:
    """A child process's member holding all 4 partitions, then this process's member joined
    (``parent`` sorts after ``child``: the range assignor gives it 2 and 3)."""
    await log.create_topics([TopicSpec("grp", 4)])
    child = spawn(CONSUMER, str(tmp_path), str(session_s))
    assert child.stdout is not None
    line = await asyncio.to_thread(child.stdout.readline)
    assert line.strip() == "assigned [0, 1, 2, 3]"
    listener = CallLog()
    me = log.consumer("g", "grp", listener, session_timeout_s=1.0, instance_id="parent")
    deadline = time.monotonic() + 10
    while me.assignment() != {2, 3}:
        await me.poll(0.05)
        assert time.monotonic() < deadline, me.assignment()
    line = await asyncio.to_thread(child.stdout.readline)
    assert line.strip() == "revoked [2, 3]"  # the child gave them up before we got them
    return child, me, listener


async def test_a_killed_member_is_gone_at_once_not_after_its_session(tmp_path: Path) -> None:
    """The kernel drops a dead process's liveness lock: its partitions move in the next sync,
    long before its 30 s session would have timed out."""
    log = await EmbeddedLog.open(tmp_path)
    child, me, listener = await child_with_all_partitions(log, tmp_path, session_s=30.0)
    try:
        child.send_signal(signal.SIGKILL)
        await asyncio.to_thread(child.wait)
        killed = time.monotonic()
        while me.assignment() != {0, 1, 2, 3}:
            await me.poll(0.05)
            assert time.monotonic() - killed < 5, me.assignment()
        took = time.monotonic() - killed
        print(f"\npartitions of a SIGKILLed member taken over in {took * 1000:.0f} ms")
        assert listener.calls == [("assigned", frozenset({2, 3})), ("assigned", frozenset({0, 1}))]
    finally:
        child.kill()
        await asyncio.to_thread(child.communicate)
        await log.close()


async def test_a_paused_member_keeps_its_partitions_until_its_session_expires(
    tmp_path: Path,
) -> None:
    """A SIGSTOPped process still holds its lock: only its session timeout (the backstop)
    moves its partitions."""
    log = await EmbeddedLog.open(tmp_path)
    child, me, _ = await child_with_all_partitions(log, tmp_path, session_s=2.0)
    try:
        child.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        while me.assignment() != {0, 1, 2, 3}:
            await me.poll(0.05)
            assert time.monotonic() - paused < 10, me.assignment()
        assert time.monotonic() - paused >= 1.0  # not before its session ran out
    finally:
        child.send_signal(signal.SIGCONT)
        child.kill()
        await asyncio.to_thread(child.communicate)
        await log.close()


# -- SIGKILL safety --------------------------------------------------------------------------

CRASHER = """
    import asyncio, hashlib, sys
    from wakeline.topics.embedded.log import EmbeddedLog
    from wakeline.topics.port import OutRecord, TopicSpec

    def value(i: int) -> bytes:
        return b"%d:" % i + hashlib.sha256(b"%d" % i).digest() * (1 + i * 7919 % 1500)

    async def main(data_dir: str) -> None:
        log = await EmbeddedLog.open(data_dir)
        await log.create_topics([TopicSpec("crash", 1)])
        i = await log.end_offset("crash", 0)
        print("ready", flush=True)
        while True:
            record = OutRecord(b"k%d" % i, value(i), (("i", b"%d" % i),))
            [(_, offset)] = await log.append("crash", [record])
            print(offset, flush=True)
            i += 1

    asyncio.run(main(sys.argv[1]))
"""


def crash_value(i: int) -> bytes:
    return b"%d:" % i + hashlib.sha256(b"%d" % i).digest() * (1 + i * 7919 % 1500)


def test_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random(1234)
    acked: list[int] = []
    for _ in range(4):
        child = spawn(CRASHER, str(tmp_path))
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        kill_at = time.monotonic() + rng.uniform(0.05, 0.4)
        while time.monotonic() < kill_at:
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else ""
            acked.append(int(line))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        acked += [
            int(line) for line in out.split("\n")[:-1]
        ]  # printed before the kill (a kill may cut the last line)
        assert child.returncode == -signal.SIGKILL

        async def check(acked: list[int]) -> None:
            log = await EmbeddedLog.open(tmp_path)
            end = await log.end_offset("crash", 0)
            assert acked and acked[-1] < end
            offset = 0
            while offset < end:
                for record in await log.read("crash", 0, offset, max_records=200):
                    assert record.offset == offset  # dense
                    assert record.key == b"k%d" % offset
                    assert record.value == crash_value(offset)  # intact
                    assert record.headers == (("i", b"%d" % offset),)
                    offset += 1
            await log.close()

        asyncio.run(check(acked))
    # strictly increasing (a record that landed but was not acknowledged before a kill leaves
    # a gap in the acknowledged offsets, not in the log)
    assert acked == sorted(set(acked))
    with sqlite3.connect(tmp_path / DB_FILENAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# -- property: keyed appends read back in order ----------------------------------------------

keys = st.one_of(st.none(), st.sampled_from([b"", b"a", b"b", b"run-1", b"run-2", "ü".encode()]))
batches = st.lists(
    st.lists(st.tuples(keys, st.binary(max_size=16)), min_size=1, max_size=6), max_size=12
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(partitions=st.integers(min_value=1, max_value=5), appends=batches)
def test_keyed_appends_read_back_in_append_order(
    partitions: int, appends: list[list[tuple[bytes | None, bytes]]]
) -> None:
    async def run(data_dir: str) -> None:
        log = await EmbeddedLog.open(data_dir)
        await log.create_topics([TopicSpec("prop", partitions)])
        model: dict[int, list[tuple[bytes | None, bytes]]] = {p: [] for p in range(partitions)}
        for batch in appends:
            placed = await log.append("prop", [OutRecord(k, v) for k, v in batch])
            for (key, value), (partition, offset) in zip(batch, placed, strict=True):
                expected = 0 if key is None else partition_for(key, partitions)
                assert partition == expected
                assert offset == len(model[partition])
                model[partition].append((key, value))
        for partition, expected_records in model.items():
            records = await log.read("prop", partition, 0, max_records=1000)
            assert [r.offset for r in records] == list(range(len(expected_records)))
            assert [(r.key, r.value) for r in records] == expected_records
            assert await log.end_offset("prop", partition) == len(expected_records)
        await log.close()

    with tempfile.TemporaryDirectory() as data_dir:
        asyncio.run(run(data_dir))


# -- embedded specifics ----------------------------------------------------------------------


async def test_key_none_goes_to_partition_zero_and_batches_are_all_or_nothing(
    tmp_path: Path,
) -> None:
    log = await EmbeddedLog.open(tmp_path, max_record_bytes=100)
    await log.create_topics([TopicSpec("t", 3)])
    assert await log.append("t", [OutRecord(None, b"x"), OutRecord(None, b"y")]) == [(0, 0), (0, 1)]
    big = OutRecord(b"k", b"v" * 90, (("header", b"h" * 10),))
    with pytest.raises(RecordTooLargeError, match="max_record_bytes=100"):
        await log.append("t", [OutRecord(None, b"fits"), big])
    assert await log.end_offset("t", 0) == 2
    with pytest.raises(UnknownTopicError):
        await log.read("t", 3, 0)
    await log.close()


async def test_offsets_are_dense_through_fenced_writers_and_commits(tmp_path: Path) -> None:
    """The embedded log promises dense offsets (the port does not: see the conformance suite):
    fenced appends, appends with an offset commit and a zombie's refused append leave no gap."""
    log = await EmbeddedLog.open(tmp_path)
    await log.create_topics([TopicSpec("t", 2), TopicSpec("src", 1)])
    first = await log.writer("w", 1)
    assert await first.append("t", [OutRecord(b"a", b"1"), OutRecord(b"b", b"2")]) == [0, 1]
    second = await log.writer("w", 1)
    with pytest.raises(FencedError):
        await first.append("t", [OutRecord(b"a", b"zombie")])
    assert await log.end_offset("t", 1) == 2
    assert await second.append(
        "t", [OutRecord(b"c", b"3")], commit=OffsetCommit("g", "src", 0, 7)
    ) == [2]
    assert await second.append("t", [], commit=OffsetCommit("g", "src", 0, 8)) == []
    assert await log.append("t", [OutRecord(key_on(1, 2), b"4")]) == [(1, 3)]
    assert await second.append("t", [OutRecord(b"d", b"5")]) == [4]
    assert [r.offset for r in await log.read("t", 1, 0)] == [0, 1, 2, 3, 4]
    assert await log.end_offset("t", 1) == 5
    assert await log.end_offset("t", 0) == 0
    assert await log.committed("g", "src", 0) == 8
    await first.close()
    await second.close()
    await log.close()


def key_on(partition: int, partitions: int) -> bytes:
    return next(
        k for k in (b"k-%d" % i for i in range(10_000)) if partition_for(k, partitions) == partition
    )


async def test_locked_database_raises_log_unavailable(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path, lock_timeout_s=0.3)
    await log.create_topics([TopicSpec("t", 1)])
    blocker = sqlite3.connect(tmp_path / DB_FILENAME, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(LogUnavailableError, match="locked"):
            await log.append("t", [OutRecord(b"k", b"v")])
        assert 0.25 <= time.monotonic() - started < 5
        assert await log.read("t", 0, 0) == []  # readers are not blocked by a writer (WAL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert await log.append("t", [OutRecord(b"k", b"v")]) == [(0, 0)]
    await log.close()


async def test_sync_full_and_reopen(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path, sync="full")
    assert log.sync == "full"
    await log.create_topics([TopicSpec("t", 2, config={"retention.ms": "-1"})])
    await log.append("t", [OutRecord(b"k", b"v")])
    await log.close()
    async with await EmbeddedLog.open(tmp_path) as again:
        assert await again.partition_count("t") == 2
        assert [r.value for r in await again.read("t", partition_for(b"k", 2), 0)] == [b"v"]


async def test_poll_is_fair_across_partitions(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path)
    await log.create_topics([TopicSpec("t", 4)])
    keys = {partition_for(f"k{i}".encode(), 4): f"k{i}".encode() for i in range(50)}
    for key in keys.values():
        await log.append("t", [OutRecord(key, b"v")] * 100)
    consumer = log.consumer("g", "t", CallLog(), session_timeout_s=1.0, max_poll_records=40)
    first = await consumer.poll(1.0)
    assert len(first) == 40
    assert {r.partition for r in first} == {0, 1, 2, 3}
    assert all(sum(r.partition == p for r in first) == 10 for p in range(4))
    for p in range(4):
        assert consumer.position(p) == 10
    await log.close()  # closes the consumer too
    assert consumer.assignment() == frozenset()


async def test_listener_errors_propagate_from_poll(tmp_path: Path) -> None:
    class Failing(CallLog):
        async def on_assigned(self, partitions: frozenset[int]) -> None:
            await super().on_assigned(partitions)
            raise RuntimeError("boom on assign")

    log = await EmbeddedLog.open(tmp_path)
    await log.create_topics([TopicSpec("t", 2)])
    listener = Failing()
    consumer = log.consumer("g", "t", listener, session_timeout_s=1.0)
    with pytest.raises(RuntimeError, match="boom on assign"):
        await consumer.poll(0.1)
    assert consumer.assignment() == {0, 1}  # assigned, even though the listener failed
    assert await consumer.poll(0.05) == []
    await consumer.close()
    assert listener.calls[-1] == ("revoked", frozenset({0, 1}))
    await log.close()


async def test_resumed_member_learns_it_lost_its_partitions(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path)
    await log.create_topics([TopicSpec("t", 2)])
    la, lb = CallLog(), CallLog()
    a = log.consumer("g", "t", la, session_timeout_s=0.6, instance_id="a")
    b = log.consumer("g", "t", lb, session_timeout_s=0.6, instance_id="b")
    await a.poll(0.05)
    assert a.assignment() == {0, 1}
    await a._freeze()
    deadline = time.monotonic() + 10
    while b.assignment() != {0, 1}:
        await b.poll(0.05)
        assert time.monotonic() < deadline
    await a.poll(0.05)  # a resumes: it rejoins, and both its partitions are gone
    assert ("revoked", frozenset({0, 1})) in la.calls
    deadline = time.monotonic() + 10
    while a.assignment() != {0} or b.assignment() != {1}:  # then the group rebalances
        await a.poll(0.05)
        await b.poll(0.05)
        assert time.monotonic() < deadline, (a.assignment(), b.assignment())
    await log.close()
