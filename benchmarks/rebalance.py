"""Membership changes under load: CLI workers (``python -m wakeline.cli worker``) on real Kafka.

12 partitions, 3 workers in one working directory, 10-call runs published steadily, a fake OpenAI
server with 50 ms latency; each prompt is unique per run and step, so a repeated one is a re-send.
Measured: re-sends per membership change (a worker SIGKILLed and restarted in place within its
session timeout -- static membership, so no rebalance is expected and only the killed process's
calls in flight should be re-sent -- and a fourth worker joining), charged to a window from the
change until all partitions are held again plus :data:`GRACE_S`; SIGKILL -> first step appended
elsewhere for a run the killed worker wrote last (static and dynamic membership, no restart), and
SIGKILL -> first step appended by the process restarted in place (static).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from benchmarks.harness import scratch_dir
from benchmarks.kafka import broker
from benchmarks.registry import Profile, Row, register
from wakeline.client import Client
from wakeline.runtime import ensure_topics
from wakeline.testing import soak_agents
from wakeline.testing.cli_fleet import CliFleet, Incarnation
from wakeline.testing.fake_llm import FakeLLMServer, RequestRecord
from wakeline.testing.journals import Journals
from wakeline.topics.kafka.log import KafkaLog
from wakeline.topics.specs import prefixed_topics

PARTITIONS = 12
WORKERS = ("a", "b", "c")
VICTIMS = ("b", "c", "a")
RUNS_PER_S = 5.0
LATENCY_S = 0.05
RESTART_SESSION_S = 10.0  # a restarted worker rejoins well within it
FAILOVER_SESSION_S = 3.0
WARMUP_S = 3.0
GRACE_S = 3.0
SETTLE_TIMEOUT_S = 90.0
HOLDS = re.compile(r" (assigned|revoked) \[([\d, ]*)\]$", re.MULTILINE)
NAME = "rebalance"
RESTARTED = "worker restarted within the session timeout"
JOINED = "a fourth worker joining"
IN_PLACE = "SIGKILL -> first resumed step, static, restarted in place"
T = TypeVar("T")
LOAD = f"{RUNS_PER_S:g} runs/s x {soak_agents.CALLS} calls, {LATENCY_S * 1000:g} ms model"


@dataclass
class Load:
    """A fleet under steady load, and every run's journal read from the log."""

    fleet: CliFleet
    server: FakeLLMServer
    journals: Journals

    async def refresh(self) -> None:
        await self.journals.refresh()

    def appended(self, run_id: str) -> list[tuple[str, int, bool]]:
        """(writer, append ms, terminal?) of each event of ``run_id``."""
        return [
            (e.writer, record.timestamp_ms or e.time_ms, e.is_terminal)
            for record, e in self.journals.records.get(run_id, [])
        ]

    def open_runs(self, writer: str | None, before_ms: float) -> set[str]:
        """Runs still open at ``before_ms`` whose last event before it ``writer`` appended."""
        out: set[str] = set()
        for run in self.journals.records:
            prior = [e for e in self.appended(run) if e[1] < before_ms]
            if prior and prior[-1][0] == writer and not any(t for _, _, t in prior):
                out.add(run)
        return out


@dataclass
class Change:
    """A membership change: when, whose process died (if any), the window it is charged."""

    at: float
    victim: str | None = None
    end: float = 0.0
    moved: int = 0


async def poll(check: Callable[[], Awaitable[T | None]], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while (found := await check()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s:g} s")
        await asyncio.sleep(0.05)
    return found


def holdings(inc: Incarnation) -> set[int]:
    """The partitions a worker holds now, from its ``assigned`` / ``revoked`` log lines."""
    held: set[int] = set()
    for kind, listed in HOLDS.findall(inc.log_path.read_text(errors="replace")):
        parts = {int(p) for p in listed.split(",") if p.strip()}
        held = held | parts if kind == "assigned" else held - parts
    return held


async def settle(fleet: CliFleet) -> dict[str, set[int]]:
    """Wait until every live worker holds partitions and together they hold each one once."""

    async def settled() -> dict[str, set[int]] | None:
        held = {n: holdings(i) for n, i in fleet.current.items() if i.alive}
        every = sorted(p for parts in held.values() for p in parts)
        return held if all(held.values()) and every == list(range(PARTITIONS)) else None

    try:
        return await poll(settled, SETTLE_TIMEOUT_S, "partitions not settled")
    except TimeoutError as exc:
        tails = "\n".join(f"--- {i.tag}\n{i.tail(15)}" for i in fleet.current.values())
        raise TimeoutError(f"{exc}: {sorted(fleet.current)} hold\n{tails}") from None


def moved(before: dict[str, set[int]], after: dict[str, set[int]]) -> int:
    owner = {p: n for n, parts in before.items() for p in parts}
    return sum(1 for n, parts in after.items() for p in parts if owner.get(p) != n)


async def publish(client: Client, prefix: str) -> None:
    begun = time.monotonic()
    for i in itertools.count():
        await asyncio.sleep(max(0.0, begun + i / RUNS_PER_S - time.monotonic()))
        await client.start_run(soak_agents.AGENT, f"{prefix} run {i}", run_id=f"{prefix}-{i}")


@asynccontextmanager
async def loaded_fleet(root: Path, membership: str, session_s: float) -> AsyncIterator[Load]:
    """Three settled CLI workers of a fresh group and topics, with runs published steadily."""
    prefix = f"rebal{uuid.uuid4().hex[:8]}"
    topics = prefixed_topics(prefix)
    log = await KafkaLog.open(broker().bootstrap)
    server = FakeLLMServer(latency_s=LATENCY_S).start()
    args = ["--partitions", str(PARTITIONS), "--session-timeout", f"{session_s:g}", "--membership"]
    fleet = CliFleet(
        bootstrap=broker().bootstrap,
        target=Path(soak_agents.__file__),
        cwd=root / prefix / "workers",
        logs=root / prefix / "logs",
        llm_base_url=server.openai_base_url,
        args=[*args, membership],
        env={"WAKELINE_TOPIC_PREFIX": prefix, "WAKELINE_GROUP": f"{prefix}-workers"},
    )
    publisher: asyncio.Task[None] | None = None
    try:
        await ensure_topics(log, partitions=PARTITIONS, topics=topics)
        for name in WORKERS:
            fleet.start(name)
        await settle(fleet)
        publisher = asyncio.create_task(publish(Client(log, topics=topics), prefix))
        await asyncio.sleep(WARMUP_S)
        yield Load(fleet, server, Journals(log, topics.events))
        if publisher.done():
            publisher.result()  # the publisher failed: so does the benchmark
        for inc in fleet.self_exits():
            logging.warning("rebalance: %s exited by itself:\n%s", inc.tag, inc.tail(10))
    finally:
        if publisher is not None:
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
        fleet.stop_all()
        server.stop()
        await log.close()


async def kill(load: Load, name: str, restart: bool) -> tuple[Change, set[str], float]:
    """SIGKILL ``name`` once it has open runs, start it again in place if ``restart``; then
    wait for the first event appended for one of those runs by the restarted process (or, without
    restart, by any other worker): the change, the runs, milliseconds from the kill to that.
    If the runs it had open all ended just before the kill, it is started again and the
    measurement is taken again (at most three times)."""
    for _ in range(2):
        try:
            return await kill_once(load, name, restart)
        except NothingOpen:
            if not restart:
                load.fleet.start(name)
            await settle(load.fleet)
            await asyncio.sleep(WARMUP_S)
    return await kill_once(load, name, restart)


class NothingOpen(RuntimeError):
    """The killed worker had no open run left at the kill: nothing to time."""


async def kill_once(load: Load, name: str, restart: bool) -> tuple[Change, set[str], float]:
    victim = load.fleet.current[name]
    writer = victim.worker_id()

    async def busy() -> bool | None:
        await load.refresh()
        return True if load.open_runs(writer, time.time() * 1000) else None

    await poll(busy, 30, f"{victim.tag} had no open run")
    load.fleet.kill(name)
    assert victim.killed_at is not None
    kill_ms = victim.killed_at * 1000
    new = load.fleet.start(name) if restart else None
    await load.refresh()
    runs = load.open_runs(writer, kill_ms)
    if not runs:
        raise NothingOpen(f"{victim.tag} had no open run left when it was killed")

    def ok(w: str) -> bool:
        return w == new.worker_id() if new else w != writer

    async def resumed() -> int | None:
        await load.refresh()
        times = [t for r in runs for w, t, _ in load.appended(r) if t >= kill_ms and ok(w)]
        return min(times, default=None)

    first = await poll(resumed, 60, f"none of {len(runs)} runs resumed")
    return Change(victim.killed_at, victim.tag), runs, first - kill_ms


def tag_of(r: RequestRecord) -> str:
    return r.path.strip("/").split("/")[0]


def resends(requests: Sequence[RequestRecord]) -> list[tuple[RequestRecord, RequestRecord]]:
    """(previous send, re-send) of every prompt the server received more than once."""
    sends: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in requests:
        sends[str(r.body["messages"][-1]["content"])].append(r)
    pairs: list[tuple[RequestRecord, RequestRecord]] = []
    for rs in sends.values():
        pairs += itertools.pairwise(sorted(rs, key=lambda r: r.received_at))
    return pairs


def in_flight(requests: Sequence[RequestRecord], at: float, tag: str | None = None) -> int:
    """Requests received by ``at`` and not answered then (from process ``tag``, if given)."""
    flying = [r for r in requests if r.received_at <= at < (r.completed_at or float("inf"))]
    return sum(1 for r in flying if tag in (None, tag_of(r)))


def conditions(membership: str, session_s: float) -> str:
    return f"{PARTITIONS} partitions, 3 CLI workers, {membership}, session {session_s:g} s, {LOAD}"


def resend_row(what: str, changes: list[Change], requests: list[RequestRecord], why: str) -> Row:
    """Re-sends whose second request fell in a change's window, per change."""
    pairs = resends(requests)
    charged = [(c, p) for c in changes for p in pairs if c.at <= p[1].received_at < c.end]
    dead = sum(1 for c, p in charged if tag_of(p[0]) == c.victim)
    mean = statistics.mean
    flying = f"{mean(in_flight(requests, c.at) for c in changes):.1f}"
    if any(c.victim for c in changes):
        flying += f" ({mean(in_flight(requests, c.at, c.victim) for c in changes):.1f} on it)"
    note = (
        f"{why}; {len(changes)} change(s): {len(charged)} re-sends, {dead} of the killed process's"
        f" calls, {len(charged) - dead} of live workers'; mean calls in flight at the change"
        f" {flying}; mean partitions moved {mean(c.moved for c in changes):.1f}; window: change"
        f" -> all partitions held again + {GRACE_S:g} s; {len(pairs)} re-sends in the fleet's life"
    )
    metric = f"re-sent calls per membership change: {what}"
    return Row(NAME, metric, len(charged) / len(changes), "calls", note)


def timing_row(metric: str, samples: list[float], note: str) -> Row:
    spread = f"mean of {len(samples)}, min {min(samples):.0f}, max {max(samples):.0f} ms"
    spread += " (kill time -> Kafka timestamp of the event)"
    return Row(NAME, metric, statistics.mean(samples), "ms", f"{spread}; {note}")


async def restarts_and_join(root: Path, restarts: int) -> tuple[list[Row], Row]:
    """Scenarios 1 and 2 on one static fleet; also kill -> first step of the restarted one."""
    async with loaded_fleet(root, "static", RESTART_SESSION_S) as load:
        fleet, changes, first = load.fleet, list[Change](), list[float]()
        before = await settle(fleet)
        for k in range(restarts):
            name = VICTIMS[k % len(VICTIMS)]
            change, _, ms = await kill(load, name, restart=True)
            first.append(ms)
            after = await settle(fleet)
            change.end, change.moved, before = time.time() + GRACE_S, moved(before, after), after
            changes.append(change)
            await asyncio.sleep(GRACE_S)
        join = Change(time.time())
        fleet.start("d")
        after = await settle(fleet)
        join.end, join.moved = time.time() + GRACE_S, moved(before, after)
        await asyncio.sleep(GRACE_S)
        requests = load.server.requests()
    load_is = conditions("static", RESTART_SESSION_S)
    rows = [
        resend_row(RESTARTED, changes, requests, f"SIGKILL + restart in place at once; {load_is}"),
        resend_row(JOINED, [join], requests, f"4th worker started, new state slot; {load_is}"),
    ]
    note = f"first event by the restarted process, of a run the killed one wrote last; {load_is}"
    return rows, timing_row(IN_PLACE, first, note)


async def failover(root: Path, membership: str, kills: int) -> Row:
    """Scenario 3: SIGKILL without restart -> first step of one of its runs elsewhere."""
    async with loaded_fleet(root, membership, FAILOVER_SESSION_S) as load:
        samples, flights, moved_runs = list[float](), list[int](), 0
        for k in range(kills):
            name = VICTIMS[k % len(VICTIMS)]
            change, runs, ms = await kill(load, name, restart=False)
            samples.append(ms)
            flights.append(in_flight(load.server.requests(), change.at))
            moved_runs += len(runs)
            if len(samples) < kills:  # back to three workers before the next kill
                load.fleet.start(name)
                await settle(load.fleet)
                await asyncio.sleep(WARMUP_S)
    note = (
        f"first event by another worker for a run the killed one wrote last; {moved_runs} runs"
        f" moved; mean calls in flight at the kill {statistics.mean(flights):.1f};"
        f" {conditions(membership, FAILOVER_SESSION_S)}"
    )
    return timing_row(f"SIGKILL -> first resumed step elsewhere, {membership}", samples, note)


@register(NAME)
async def rebalance(profile: Profile) -> list[Row]:
    changes = 1 if profile.name == "quick" else 3
    with scratch_dir() as root:
        rows, restarted = await restarts_and_join(root, changes)
        for membership in ("static", "dynamic"):
            rows.append(await failover(root, membership, changes))
    return [*rows, restarted]
