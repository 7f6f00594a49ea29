"""Benchmarks of the real path: a Worker on an EmbeddedLog with a zero-latency mock model."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil

from benchmarks.harness import (
    CHAIN,
    WARM_UP,
    Harness,
    Job,
    TimedModel,
    bench_app,
    percentile,
    poll_until,
    running_worker,
    scratch_dir,
    sequential_runs,
    wait_events,
)
from benchmarks.registry import Profile, Row, register
from wakeline.core.activation import Activation, Recover
from wakeline.core.app import App
from wakeline.core.run_core import RunCore
from wakeline.projections.journal import JournalProjection
from wakeline.projections.store import ProjectionStore
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import Event
from wakeline.topics.embedded.store import SyncMode

HOUR_S = 3600.0


def _events_per_run(calls: int) -> int:
    """RunStarted + a request and a completion per call + RunCompleted."""
    return 2 * calls + 2


# -- 1. sequential steps ------------------------------------------------------------------------


@register("steps")
async def steps(profile: Profile) -> list[Row]:
    """One run at a time, each ``step_calls`` sequential ``ctx.llm`` calls; both sync modes."""
    rows: list[Row] = []
    for sync in ("normal", "full"):
        rows += await _sequential_steps(profile, sync)
    return rows


async def _sequential_steps(profile: Profile, sync: SyncMode) -> list[Row]:
    model = TimedModel()
    runs, calls = profile.step_runs, profile.step_calls
    with scratch_dir() as data:
        async with running_worker(bench_app(model), data, sync=sync) as h:
            wall, overheads = await sequential_runs(h, model, runs, calls)
    name, case = "steps", f"sync={sync}"
    note = f"{runs} runs x {calls} calls, one run at a time, Client.result following"
    return [
        Row(name, f"{case}: model calls/s", runs * calls / wall, "1/s", note),
        Row(name, f"{case}: events/s", runs * _events_per_run(calls) / wall, "1/s"),
        Row(name, f"{case}: step overhead p50", percentile(overheads, 50), "us"),
        Row(name, f"{case}: step overhead p99", percentile(overheads, 99), "us"),
        Row(name, f"{case}: step overhead max", max(overheads), "us"),
    ]


# -- 2. parallel runs ---------------------------------------------------------------------------


@register("parallel")
async def parallel(profile: Profile) -> list[Row]:
    """Many concurrent runs: with a client following each one, and with nobody following."""
    runs, calls = profile.parallel_runs, profile.parallel_calls
    followed = await _parallel_once(runs, calls, follow=True)
    unfollowed = await _parallel_once(runs, calls, follow=False)
    note = f"{runs} concurrent runs x {calls} calls"
    return [
        Row("parallel", "followed: model calls/s", runs * calls / followed, "1/s", note),
        Row("parallel", "followed: wall", followed * 1000, "ms", "every run awaited by a client"),
        Row("parallel", "unfollowed: model calls/s", runs * calls / unfollowed, "1/s", note),
        Row("parallel", "unfollowed: wall", unfollowed * 1000, "ms", "results read afterwards"),
    ]


@register("latency")
async def latency(profile: Profile) -> list[Row]:
    """Ten times ``parallel``'s runs at once, 10 calls each, at 50 ms model latency: how close
    one worker gets to the ideal (10 x 50 ms), unfollowed and with a client following each."""
    runs, calls, latency_s = profile.parallel_runs * 10, 10, 0.05
    ideal = calls * latency_s
    unfollowed = await _parallel_once(runs, calls, follow=False, latency_s=latency_s)
    followed = await _parallel_once(runs, calls, follow=True, latency_s=latency_s)
    note = f"{runs} runs x {calls} calls at {latency_s * 1000:g} ms, one worker"
    return [
        Row("latency", "floor: ideal wall (calls x latency)", ideal * 1000, "ms", note),
        Row("latency", "unfollowed: wall", unfollowed * 1000, "ms", "target: <= 1.25x ideal"),
        Row("latency", "followed: wall", followed * 1000, "ms", "target: <= 1.1x unfollowed"),
        Row("latency", "unfollowed / ideal", unfollowed / ideal, "x"),
        Row("latency", "followed / unfollowed", followed / unfollowed, "x"),
    ]


async def _parallel_once(runs: int, calls: int, *, follow: bool, latency_s: float = 0.0) -> float:
    """Seconds from the first start to the last run's end."""
    model = TimedModel(latency_s)
    with scratch_dir() as data:
        async with running_worker(bench_app(model), data) as h:
            await h.run_to_end(WARM_UP)
            model.reset()
            job = Job(calls=calls)
            start = time.perf_counter()
            if follow:
                await asyncio.gather(*(h.run_to_end(job) for _ in range(runs)))
                return time.perf_counter() - start
            handles = await asyncio.gather(
                *(h.client.start_run(CHAIN, job.model_dump()) for _ in range(runs))
            )
            await poll_until(
                lambda: model.calls == runs * calls and not h.worker.running_runs, timeout_s=300
            )
            elapsed = time.perf_counter() - start
            for handle in handles:  # every run really completed
                await h.client.result(handle.run_id, from_offset=handle.from_offset)
            return elapsed


# -- 3. resume ----------------------------------------------------------------------------------


@register("resume")
async def resume(profile: Profile) -> list[Row]:
    """Resume a run with many recorded steps that is waiting on a long timer."""
    steps_n = profile.resume_steps
    model = TimedModel()
    app = bench_app(model)
    with scratch_dir() as data:
        start = time.perf_counter()
        run_id = await _record_open_run(app, data, steps_n)
        recorded_s = time.perf_counter() - start
        load_s, decode_s, events = _load_journal(data / "state", run_id)
        recover_s = _recover(app, run_id, events)
        warm_s = await _worker_resume(app, data, data / "state", run_id)
        cold_s = await _worker_resume(app, data, data / "state-cold", run_id)
    name = "resume"
    note = f"{steps_n} model calls, {len(events)} events, recorded through the worker"
    return [
        Row(name, "record the run (worker)", recorded_s * 1000, "ms", note),
        Row(name, "(a) load journal from RocksDB", load_s * 1000, "ms"),
        Row(name, "(a) Avro-decode journal", decode_s * 1000, "ms"),
        Row(name, "(b) RunCore recovery", recover_s * 1000, "ms"),
        Row(name, "(c) fresh worker, same state dir", warm_s * 1000, "ms", "run() -> actor runs"),
        Row(name, "(c) fresh worker, empty state dir", cold_s * 1000, "ms", "folds the log first"),
    ]


async def _record_open_run(app: App, data: Path, steps_n: int) -> str:
    """Record ``steps_n`` calls then a one-hour sleep; return once the timer is journaled."""
    async with running_worker(app, data) as h:
        before = await h.events_total()
        handle = await h.client.start_run(CHAIN, Job(calls=steps_n, sleep_s=HOUR_S).model_dump())
        expected = before + 2 * steps_n + 2  # RunStarted, calls, TimerScheduled
        await wait_events(h, expected, timeout_s=600)
        return handle.run_id


def _load_journal(state: Path, run_id: str) -> tuple[float, float, list[Event]]:
    with ProjectionStore(state) as store:
        start = time.perf_counter()
        raw = JournalProjection(store).load(run_id)
        loaded = time.perf_counter()
        codec = event_codec()
        events = [codec.decode(value) for value in raw]
        decoded = time.perf_counter()
    return loaded - start, decoded - loaded, events


def _recover(app: App, run_id: str, events: list[Event]) -> float:
    core = RunCore(run_id, app, journal=list(events))
    start = time.perf_counter()
    completion = core.activate(Activation(Recover(), int(time.time() * 1000), "bench"))
    elapsed = time.perf_counter() - start
    if completion.finished or len(completion.effects) != 1:
        raise RuntimeError(f"unexpected recovery of {run_id}: {completion.status}")
    return elapsed


async def _worker_resume(app: App, data: Path, state: Path, run_id: str) -> float:
    """Seconds from a fresh worker's ``run()`` to the run's actor running again."""
    async with running_worker(app, data, state=state, create=False) as h:
        await poll_until(lambda: run_id in h.worker.running_runs, timeout_s=120)
        return time.perf_counter() - h.started_at


# -- 4. memory ----------------------------------------------------------------------------------


@register("memory")
async def memory(profile: Profile) -> list[Row]:
    """RSS growth while a worker holds many open runs waiting on a one-hour sleep.

    Measured in a fresh child process: memory freed by earlier benchmarks would otherwise be
    reused and hide the growth.
    """
    runs = profile.memory_runs
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        loop = asyncio.get_running_loop()
        before, after = await loop.run_in_executor(pool, _memory_in_child, runs)
    note = f"{runs} open runs, each waiting on ctx.sleep(3600); fresh process"
    return [
        Row("memory", "RSS before", before / 2**20, "MiB", "worker running, one run done"),
        Row("memory", "RSS holding the runs", after / 2**20, "MiB", note),
        Row("memory", "per waiting run", (after - before) / runs / 1024, "KiB"),
    ]


def _memory_in_child(runs: int) -> tuple[int, int]:
    return asyncio.run(_measure_memory(runs))


async def _measure_memory(runs: int) -> tuple[int, int]:
    """RSS (bytes) with a warmed-up worker, then with ``runs`` sleeping runs open."""
    proc = psutil.Process()
    with scratch_dir() as data:
        async with running_worker(bench_app(TimedModel()), data) as h:
            await h.run_to_end(WARM_UP)
            before = _rss(proc)
            await _start_sleepers(h, runs)
            after = _rss(proc)
    return before, after


async def _start_sleepers(h: Harness, runs: int) -> None:
    before = await h.events_total()
    job = Job(calls=0, sleep_s=HOUR_S).model_dump()
    await asyncio.gather(*(h.client.start_run(CHAIN, job) for _ in range(runs)))
    expected = before + 2 * runs  # RunStarted + TimerScheduled each
    await wait_events(h, expected, timeout_s=300)
    await poll_until(lambda: len(h.worker.running_runs) >= runs, timeout_s=60)


def _rss(proc: psutil.Process) -> int:
    gc.collect()
    rss: int = proc.memory_info().rss
    return rss
