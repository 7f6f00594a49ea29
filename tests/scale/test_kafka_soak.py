"""Soak on real Kafka: three worker processes, one SIGKILLed and restarted every few seconds.

Every run completes with a dense journal; no model call whose result was journaled is sent
again; the resends are bounded by the calls in flight at the membership changes; projections
folded incrementally during the test equal a fresh fold of the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import defaultdict
from pathlib import Path

import pytest
from fleet import Fleet, all_events, check_journal
from kafka_agents import CALLS, topics_for

from wakeline.client import Client
from wakeline.projections.runner import catch_up
from wakeline.projections.store import ProjectionStore
from wakeline.projections.views import FORMAT_KEY, Views, query_projections, topic_names
from wakeline.runtime import ensure_topics
from wakeline.schemas.events import ModelCallCompleted, ModelCallRequested
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.journals import Journals
from wakeline.testing.kafka_broker import KafkaBroker
from wakeline.topics.kafka.log import KafkaLog

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

RUNS = int(os.environ.get("WAKELINE_SOAK_RUNS", "300"))
KILL_EVERY_S = 2.5
DEADLINE_S = 600


async def next_completion_or_tick(journals: Journals, tick_s: float) -> None:
    """Until the log shows one more run completed, or ``tick_s`` passed (kills are timed)."""
    seen = len(journals.completed)
    with contextlib.suppress(TimeoutError):
        await journals.wait(lambda j: len(j.completed) > seen, timeout_s=tick_s)


async def test_soak_with_a_worker_killed_every_few_seconds(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    prefix = f"soak{os.getpid()}{random.randrange(10**6)}"
    topics = topics_for(prefix)
    log = await KafkaLog.open(kafka_broker.bootstrap)
    server = FakeLLMServer(latency_s=0.05).start()
    fleet = Fleet(kafka_broker.bootstrap, server.openai_base_url, prefix, tmp_path)
    views = Views(log, tmp_path / "views", topics=topics)
    journals = Journals(log, topics.events)
    in_flight_at_changes: list[int] = []
    kills = 0
    try:
        await ensure_topics(log, partitions=12, topics=topics)
        for name in ("a", "b", "c"):
            fleet.start(name)
        client = Client(log, topics=topics)
        for i in range(RUNS):
            await client.start_run("tenstep", f"run {i}", run_id=f"{prefix}-{i}")

        async def in_flight() -> int:
            """Calls sent at least once whose result is not journaled yet."""
            runs = await all_events(log, topics.events)
            journaled = sum(
                isinstance(e.payload, ModelCallCompleted) for evs in runs.values() for e in evs
            )
            return len({r.digest for r in server.requests()}) - journaled

        started = time.monotonic()
        next_kill = started + KILL_EVERY_S
        # also kill at every sixth of the runs completed, so a fast machine still kills often
        milestones = [RUNS * i // 6 for i in range(1, 6)]
        while True:
            await views.refresh()
            done = views.queries.list_runs(status="completed", limit=RUNS + 1).items
            if len(done) == RUNS:
                break
            assert time.monotonic() - started < DEADLINE_S, f"only {len(done)}/{RUNS} completed"
            due = bool(milestones) and len(done) >= milestones[0]
            milestones = [m for m in milestones if m > len(done)]
            if due or time.monotonic() >= next_kill:
                victim = random.choice(sorted(fleet.procs))
                in_flight_at_changes.append(await in_flight())
                fleet.kill(victim)
                kills += 1
                await asyncio.sleep(1.0)  # chaos timing: the victim stays dead a moment
                in_flight_at_changes.append(await in_flight())
                fleet.start(victim)
                next_kill = time.monotonic() + KILL_EVERY_S
            await next_completion_or_tick(journals, 0.5)
        elapsed = time.monotonic() - started
        runs = await all_events(log, topics.events)
        requests = server.requests()
    finally:
        await journals.aclose()
        fleet.stop_all()
        server.stop()

    try:
        assert kills >= 3, "the soak must kill workers while runs are in flight"
        assert len(runs) == RUNS
        for run_id, events in runs.items():
            check_journal(run_id, events, CALLS)

        # when each call's result was journaled, by its prompt (unique per run and step)
        completed_at: dict[str, float] = {}
        for events in runs.values():
            by_seq = {e.seq: e.payload for e in events}
            for e in events:
                if isinstance(e.payload, ModelCallCompleted):
                    req = by_seq[e.payload.step]
                    assert isinstance(req, ModelCallRequested)
                    prompt = json.loads(req.request)["messages"][-1]["content"]
                    completed_at[prompt] = e.time_ms / 1000
        sends: dict[str, list[float]] = defaultdict(list)
        for r in requests:
            sends[r.body["messages"][-1]["content"]].append(r.received_at)
        assert set(sends) == set(completed_at) and len(sends) == RUNS * CALLS
        late = {p: t for p, t in sends.items() if max(t) > completed_at[p] + 0.001}
        assert late == {}, f"calls sent again after their result was journaled: {late}"
        resent = sum(len(times) - 1 for times in sends.values())
        assert resent <= sum(max(0, n) for n in in_flight_at_changes), (
            resent,
            in_flight_at_changes,
        )

        # projections folded incrementally all along equal a fresh fold of the whole log
        await views.refresh()
        fresh = ProjectionStore(tmp_path / "fresh")
        await catch_up(
            log,
            fresh,
            query_projections(),
            topic_names=topic_names(topics),
        )
        incremental = {k: v for k, v in views.items() if k != FORMAT_KEY}  # the views' mark
        assert incremental == dict(fresh.items())
        fresh.close()
        print(
            f"soak: {RUNS} runs x {CALLS} calls in {elapsed:.1f}s, {kills} kills, "
            f"{resent} calls re-sent (in flight at changes: {sum(in_flight_at_changes)})"
        )
    finally:
        views.close()
        await log.close()
