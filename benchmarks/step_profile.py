"""Where a journaled step's time goes, beside the floors measured in the same run.

Floors: one SQLite WAL commit of the same bytes a step journals (its request and completion
events, encoded), on the calling thread, ``synchronous=NORMAL`` (no fsync per commit) and
``FULL`` (one fsync); and one bare thread-pool round trip from the event loop.

Parts: pieces of a step, each timed alone: encoding and decoding the step's two events, and
one ``EmbeddedLog.append`` of them through the port (thread hop, transaction, waking readers).

Profile: the ``steps`` benchmark's workload run under ``cProfile`` on the event-loop thread,
its time grouped by the code it was spent in.  ``waiting`` is the loop blocked in ``epoll``:
on the log's write and read threads (SQLite), on the mock model, or on nothing.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.codec import sample_events
from benchmarks.harness import (
    Harness,
    TimedModel,
    bench_app,
    percentile,
    running_worker,
    scratch_dir,
    sequential_runs,
)
from benchmarks.registry import Profile, Row, register
from wakeline.schemas.codec import event_codec
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.embedded.store import SyncMode
from wakeline.topics.port import OutRecord, TopicSpec

NAME = "step_profile"

_HAND_OFFS = (
    "SimpleQueue",
    "_socket.socket",
    "concurrent/futures",
    "_chain_future",
    "_copy_future_state",
    "threadsafe",
    "_write_to_self",
    "_read_from_self",
)
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (  # the first match names a function
    ("waiting (epoll: threads, model, idle)", ("select.epoll", "selectors.py")),
    ("thread hand-offs (pool queue, wake-up pipe)", _HAND_OFFS),
    ("signing (HMAC)", ("hmac", "wakeline/topics/signing")),
    ("avro codec (fastavro, wakeline/schemas)", ("fastavro", "wakeline/schemas")),
    ("pydantic", ("pydantic",)),
    ("projections, RocksDB", ("wakeline/projections", "Rdict", "rocksdict")),
    ("embedded log (port side)", ("wakeline/topics",)),
    ("run core (deterministic)", ("wakeline/core",)),
    ("actors (driver)", ("wakeline/actors",)),
    ("client (following the run)", ("wakeline/client", "wakeline/watching")),
    ("telemetry", ("wakeline/telemetry", "opentelemetry")),
    ("asyncio machinery", ("asyncio", "_contextvars", "threading.py")),
    ("json, hashing", ("json", "hashlib", "wakeline/jsonutil")),
)


def _step_records() -> list[bytes]:
    codec = event_codec()
    return [codec.encode(e) for e in sample_events()[1:]]  # a request and its completion


def _per_op_us(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - start) / 1000)
    return out


def _sqlite_commit_us(path: Path, sync: SyncMode, n: int) -> list[float]:
    """``n`` commits of the step's bytes into a WAL-mode SQLite table, on this thread."""
    values = [(b"k", v) for v in _step_records()]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={sync.upper()}")
        conn.execute("CREATE TABLE r (o INTEGER PRIMARY KEY, k BLOB, v BLOB)")

        def commit() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO r (k, v) VALUES (?, ?)", values)
            conn.execute("COMMIT")

        return _per_op_us(commit, n)
    finally:
        conn.close()


async def _pool_round_trip_us(n: int) -> list[float]:
    loop = asyncio.get_running_loop()
    out = []
    for _ in range(n):
        start = time.perf_counter_ns()
        await loop.run_in_executor(None, int)
        out.append((time.perf_counter_ns() - start) / 1000)
    return out


async def _port_append_us(path: Path, sync: SyncMode, n: int) -> list[float]:
    records = [OutRecord(b"0123456789abcdef", v) for v in _step_records()]
    async with await EmbeddedLog.open(path, sync=sync) as log:
        await log.create_topics([TopicSpec("t", 1)])
        out = []
        for _ in range(n):
            start = time.perf_counter_ns()
            await log.append("t", records)
            out.append((time.perf_counter_ns() - start) / 1000)
        return out


def _codec_rows(n: int) -> list[Row]:
    codec = event_codec()
    events = sample_events()[1:]
    data = [codec.encode(e) for e in events]
    enc = _per_op_us(lambda: [codec.encode(e) for e in events], n)
    dec = _per_op_us(lambda: [codec.decode(d) for d in data], n)
    return [
        Row(NAME, "part: encode the step's 2 events, p50", percentile(enc, 50), "us"),
        Row(NAME, "part: decode the step's 2 events, p50", percentile(dec, 50), "us"),
    ]


async def _floors_and_parts(n: int) -> list[Row]:
    size = sum(len(v) for v in _step_records())
    modes: tuple[SyncMode, ...] = ("normal", "full")
    rows: list[Row] = []
    with scratch_dir() as data:
        for sync in modes:
            raw = _sqlite_commit_us(data / f"raw-{sync}.db", sync, n)
            port = await _port_append_us(data / f"log-{sync}", sync, n)
            floor = f"floor: SQLite WAL commit, synchronous={sync.upper()}, p50"
            part = f"part: EmbeddedLog.append of the same, sync={sync}, p50"
            rows += [
                Row(NAME, floor, percentile(raw, 50), "us", f"{size} B: a step's two events"),
                Row(NAME, part, percentile(port, 50), "us", "thread hop, transaction, wake-ups"),
            ]
    hop = await _pool_round_trip_us(n)
    rows.append(Row(NAME, "floor: thread-pool round trip, p50", percentile(hop, 50), "us"))
    return rows + _codec_rows(n)


def _category(filename: str, function: str) -> str:
    where = f"{filename}:{function}"
    for name, needles in CATEGORIES:
        if any(needle in where for needle in needles):
            return name
    return "other (python, stdlib)"


def _shares(profiler: cProfile.Profile) -> dict[str, float]:
    """Seconds of the profiled thread by category (each function's own time)."""
    raw = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}
    for (filename, _line, function), (_cc, _nc, own_s, _cum, _callers) in raw.items():
        name = _category(filename, function)
        totals[name] = totals.get(name, 0.0) + own_s
    return totals


async def _profiled_steps(h: Harness, model: TimedModel, runs: int, calls: int) -> list[Row]:
    profiler = cProfile.Profile()
    profiler.enable()
    wall, overheads = await sequential_runs(h, model, runs, calls)
    profiler.disable()
    steps = runs * calls
    totals = _shares(profiler)
    all_s = sum(totals.values())
    note = f"{runs} runs x {calls} calls under cProfile (which slows every Python call)"
    rows = [
        Row(NAME, "profiled: step overhead p50", percentile(overheads, 50), "us", note),
        Row(NAME, "profiled: wall time per step", wall / steps * 1e6, "us"),
    ]
    for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        rows.append(Row(NAME, f"share of loop thread: {name}", 100 * seconds / all_s, "%"))
    return rows


@register(NAME)
async def step_profile(profile: Profile) -> list[Row]:
    """Floors, parts, and a cProfile of the loop thread during sequential steps."""
    rows = await _floors_and_parts(max(200, profile.step_calls * 4))
    model = TimedModel()
    runs, calls = profile.step_runs, profile.step_calls
    with scratch_dir() as data:
        async with running_worker(bench_app(model), data) as h:
            _, overheads = await sequential_runs(h, model, runs, calls)
            whole = percentile(overheads, 50)
            rows.append(Row(NAME, "whole: step overhead p50, sync=normal", whole, "us"))
            rows += await _profiled_steps(h, model, runs, calls)
    return rows
