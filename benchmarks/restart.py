"""A crashed worker restarted on one machine: SIGKILL -> the resumed run's next step.

One CLI worker (``python -m wakeline.cli --data D worker soak_agents.py``) on the embedded log runs
four 10-call runs against a fake OpenAI server (50 ms per call).  Once a run has two calls done the
worker is SIGKILLed and started again in place; measured is the time from the kill to the first
event the new process appends for one of the runs the killed one had open.  With static
membership the restarted process is the same group member (its state slot's instance id); with
dynamic membership it is a new one, and the dead member's partitions are free only once the log
knows it is dead: from the kernel-released liveness lock at once, not after its 10 s session.
The floor is the same process's start-up to its first step of a run started then (``cold``).

``standby``: two CLI workers share the partitions (dynamic membership, a state slot each);
one is SIGKILLed and the other, already running, takes its partitions over: measured is the
kill to the survivor's first event for a run the killed one had open.  No process starts, so
this is the membership's part alone.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import scratch_dir
from benchmarks.registry import Profile, Row, register
from wakeline.client import Client
from wakeline.schemas.events import ModelCallCompleted
from wakeline.testing import soak_agents
from wakeline.testing.cli_fleet import CliFleet, Incarnation
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.journals import Journals

NAME = "embedded_restart"
RUNS = 4
LATENCY_S = 0.05
SESSION_S = 10.0


def _fleet(root: Path, server: FakeLLMServer, membership: str) -> CliFleet:
    return CliFleet(
        data=root / "data",
        target=Path(soak_agents.__file__),
        cwd=root / "workers",
        logs=root / "logs",
        llm_base_url=server.openai_base_url,
        args=["--session-timeout", f"{SESSION_S:g}", "--membership", membership],
        env={},
    )


def _first_by(journals: Journals, inc: Incarnation, since_ms: float) -> float | None:
    writer = inc.worker_id()
    times = [
        e.time_ms
        for recs in journals.records.values()
        for _, e in recs
        if writer is not None and e.writer == writer and e.time_ms >= since_ms
    ]
    return min(times, default=None)


async def _once(membership: str) -> tuple[float, float]:
    """(kill -> resumed step, cold start -> first step) in ms."""
    with scratch_dir() as root, FakeLLMServer(latency_s=LATENCY_S) as server:
        fleet = _fleet(root, server, membership)
        async with await Client.open(data=root / "data") as client:
            await client.create_topics()
            journals = Journals(client.log, client.topics.events)
            try:
                first = fleet.start("w")
                for i in range(RUNS):
                    await client.start_run(soak_agents.AGENT, f"r{i}", run_id=f"r{i}")
                await journals.wait(lambda j: _first_by(j, first, 0) is not None, timeout_s=60)
                cold = _first_by(journals, first, 0) - first.started_at * 1000  # type: ignore[operator]

                def two_done(j: Journals) -> bool:
                    return any(
                        sum(isinstance(e.payload, ModelCallCompleted) for _, e in recs) >= 2
                        for recs in j.records.values()
                    )

                await journals.wait(two_done, timeout_s=60)
                fleet.kill("w")
                killed_ms = time.time() * 1000
                again = fleet.start("w")
                await journals.wait(
                    lambda j: _first_by(j, again, killed_ms) is not None, timeout_s=60
                )
                resumed = _first_by(journals, again, killed_ms) - killed_ms  # type: ignore[operator]
            finally:
                await journals.aclose()
                fleet.stop_all()
    return resumed, cold


def _two_done_by(inc: Incarnation) -> Callable[[Journals], bool]:
    def holds(j: Journals) -> bool:
        writer = inc.worker_id()
        return any(
            sum(isinstance(e.payload, ModelCallCompleted) and e.writer == writer for _, e in recs)
            >= 2
            for recs in j.records.values()
        )

    return holds


def _taken_over(journals: Journals, dead: set[str], by: Incarnation, since_ms: float) -> float:
    """The first time ``by`` appended to one of the runs in ``dead`` after ``since_ms``."""
    writer = by.worker_id()
    times = [
        e.time_ms
        for run_id in dead
        for _, e in journals.records.get(run_id, [])
        if e.writer == writer and e.time_ms >= since_ms
    ]
    return min(times, default=-1.0)


async def _standby_once() -> float:
    """SIGKILL one of two running workers -> the other's first step of its runs, in ms."""
    with scratch_dir() as root, FakeLLMServer(latency_s=LATENCY_S) as server:
        fleet = _fleet(root, server, "dynamic")
        async with await Client.open(data=root / "data") as client:
            await client.create_topics()
            journals = Journals(client.log, client.topics.events)
            try:
                a, b = fleet.start("a"), fleet.start("b")
                for i in range(2 * RUNS):
                    await client.start_run(soak_agents.AGENT, f"r{i}", run_id=f"r{i}")
                await journals.wait(_two_done_by(a), timeout_s=60)
                await journals.wait(lambda j: _first_by(j, b, 0) is not None, timeout_s=60)
                fleet.kill("a")
                killed_ms = time.time() * 1000
                writer = a.worker_id()
                dead = {
                    run_id
                    for run_id, recs in journals.records.items()
                    if any(e.writer == writer for _, e in recs) and not recs[-1][1].is_terminal
                }
                await journals.wait(lambda j: _taken_over(j, dead, b, killed_ms) >= 0, timeout_s=60)
                return _taken_over(journals, dead, b, killed_ms) - killed_ms
            finally:
                await journals.aclose()
                fleet.stop_all()


@register(NAME)
async def embedded_restart(profile: Profile) -> list[Row]:
    rows: list[Row] = []
    repeats = 1 if profile.name == "quick" else 3
    for membership in ("static", "dynamic"):
        samples = [await _once(membership) for _ in range(repeats)]
        resumed = statistics.median(s[0] for s in samples)
        cold = statistics.median(s[1] for s in samples)
        note = (
            f"floor: {cold:.0f} ms from a cold start to its first step; {SESSION_S:g} s session;"
            f" {RUNS} runs, {LATENCY_S * 1000:g} ms model; median of {repeats}"
        )
        rows.append(
            Row(
                NAME,
                f"SIGKILL -> resumed step, {membership}, restarted in place",
                resumed,
                "ms",
                note,
            )
        )
    standby = statistics.median([await _standby_once() for _ in range(repeats)])
    note = f"target: <= 50; no process starts, the survivor was running; median of {repeats}"
    rows.append(
        Row(NAME, "SIGKILL -> resumed step, standby worker takes over", standby, "ms", note)
    )
    return rows
