"""Soak on real Kafka with workers run the way users run them (issue #10).

Three ``wakeline --kafka B worker MODULE`` processes share one working directory and its default
state directories (``./.wakeline/state/worker-N``); 12 partitions; runs of 10 sequential model
calls are published continuously at ~10 runs/s while a random worker is SIGKILLed and started
again in place every 3-6 s, and one worker is SIGSTOPped past its session timeout, then
SIGCONTed.  The model is an OpenAI-compatible fake server that logs every request on arrival.

Asserted: every run completes once; per-run seq numbers are dense with no duplicate, one result
per model call; no request reaches the provider after the append (Kafka record timestamp) of its
``ModelCallCompleted``; journaled tokens and cost equal an uncrashed reference of the same runs;
replay is byte-identical for every run; no worker exits by itself.  Printed: the re-sends by
cause.  ``WAKELINE_SOAK_RUNS`` changes the number of runs (default 300).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from soak_checks import (
    Problems,
    Totals,
    cost_problems,
    journal_problems,
    late_requests,
    replay_problems,
    resend_causes,
    summary,
    totals,
)

from wakeline.client import Client
from wakeline.runtime import ensure_topics
from wakeline.testing import soak_agents
from wakeline.testing.cli_fleet import CliFleet, Incarnation
from wakeline.testing.fake_llm import FakeLLMServer, RequestRecord
from wakeline.testing.harness import local_runtime, prefixed_topics
from wakeline.testing.journals import Journals
from wakeline.testing.kafka_broker import KafkaBroker
from wakeline.testing.soak_agents import AGENT, CALLS, make_app
from wakeline.topics.kafka.log import KafkaLog
from wakeline.topics.signing import KEY_ENV, RecordSigner, create_key_file
from wakeline.topics.specs import Topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(900)]

RUNS = int(os.environ.get("WAKELINE_SOAK_RUNS", "300"))
RUNS_PER_S = 10.0
PARTITIONS = 12
WORKERS = ("a", "b", "c")
SESSION_S = 3.0
KILL_EVERY_S = (3.0, 6.0)
PAUSE_S = 5.0  # > SESSION_S: the paused worker's partitions move, it wakes up fenced
LATENCY_S = 0.05
DEADLINE_S = 420.0
TARGET = Path(soak_agents.__file__)


async def reference(inputs: dict[str, str], root: Path) -> dict[str, Totals]:
    """The same runs, uncrashed: one in-process worker on the embedded log, its own fake
    server (replies are a pure function of the request body)."""
    with FakeLLMServer() as server:
        async with local_runtime(make_app(server.openai_base_url), root) as rt:
            for run_id, name in inputs.items():
                await rt.client.start_run(AGENT, name, run_id=run_id)
            journals = Journals(rt.log, rt.topics.events)
            try:
                await journals.wait(lambda j: len(j.completed) >= len(inputs), timeout_s=180)
            except TimeoutError:
                seen = sum(len(r) for r in journals.records.values())
                raise AssertionError(
                    f"the uncrashed reference did not finish: {len(journals.completed)} of"
                    f" {len(inputs)} runs completed, {len(journals.records)} started, {seen}"
                    f" events read; the worker runs {len(rt.worker.running_runs)} runs"
                ) from None
            finally:
                await journals.aclose()
    out: dict[str, Totals] = {}
    for run_id, recs in journals.records.items():
        out[run_id] = totals(e for _, e in recs)
        assert out[run_id].calls == CALLS, f"reference {run_id}: {out[run_id]}"
    return out


@dataclass
class Chaos:
    """The soak's drivers: publishing, kills with restarts in place, one long pause."""

    fleet: CliFleet
    client: Client
    inputs: dict[str, str]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    published: int = 0
    kills: list[Incarnation] = field(default_factory=list)
    paused: list[Incarnation] = field(default_factory=list)
    self_exited: list[Incarnation] = field(default_factory=list)

    async def publish(self) -> None:
        """Runs published at RUNS_PER_S while the workers die, not all up front."""
        begun = time.monotonic()
        for i, (run_id, name) in enumerate(self.inputs.items()):
            await asyncio.sleep(max(0.0, begun + i / RUNS_PER_S - time.monotonic()))
            await self.client.start_run(AGENT, name, run_id=run_id)
            self.published += 1

    async def kill_and_restart(self) -> None:
        """A random worker SIGKILLed and started again in place every 3-6 s."""
        while not self.done.is_set():
            await asyncio.sleep(random.uniform(*KILL_EVERY_S))
            candidates = [n for n, i in self.fleet.current.items() if i.alive and not i.paused]
            if self.done.is_set() or not candidates:
                continue
            victim = random.choice(candidates)
            self.kills.append(self.fleet.kill(victim))
            self.fleet.start(victim)

    async def pause_once(self) -> None:
        """One worker SIGSTOPped for longer than its session timeout, then SIGCONTed."""
        await asyncio.sleep(random.uniform(0.3, 0.6) * len(self.inputs) / RUNS_PER_S)
        victim = random.choice([n for n, i in self.fleet.current.items() if i.alive])
        inc = self.fleet.pause(victim)
        self.paused.append(inc)
        try:
            await asyncio.sleep(PAUSE_S)
        finally:
            self.fleet.resume(inc)

    def supervise(self) -> None:
        """A worker that exited by itself is noted and started again, as a supervisor would."""
        for inc in self.fleet.self_exits():
            self.self_exited.append(inc)
            self.fleet.start(inc.name)


async def run_soak(chaos: Chaos, journals: Journals) -> float:
    """Start the fleet and the drivers; seconds until every run completed (or the deadline)."""
    started = time.monotonic()
    for name in WORKERS:
        chaos.fleet.start(name)
    drivers = [chaos.publish(), chaos.kill_and_restart(), chaos.pause_once()]
    tasks = [asyncio.create_task(d) for d in drivers]
    try:
        while len(journals.completed) < len(chaos.inputs):
            if time.monotonic() - started > DEADLINE_S:
                break
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    task.result()  # the test's own machinery failed
            chaos.supervise()
            with contextlib.suppress(TimeoutError):  # woken by completions, else supervise again
                await journals.wait(lambda j: len(j.completed) >= len(chaos.inputs), timeout_s=0.25)
        chaos.self_exited += chaos.fleet.self_exits()
        return time.monotonic() - started
    finally:
        chaos.done.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await journals.aclose()


def fleet_for(broker: KafkaBroker, tmp_path: Path, prefix: str, server: FakeLLMServer) -> CliFleet:
    return CliFleet(
        bootstrap=broker.bootstrap,
        target=TARGET,
        cwd=tmp_path / "workers",
        logs=tmp_path / "logs",
        llm_base_url=server.openai_base_url,
        args=["--partitions", str(PARTITIONS), "--session-timeout", f"{SESSION_S:g}"],
        env={
            "WAKELINE_TOPIC_PREFIX": prefix,
            "WAKELINE_GROUP": f"{prefix}-workers",
            KEY_ENV: str(record_key(tmp_path)),  # the fleet signs its events
        },
    )


def record_key(tmp_path: Path) -> Path:
    create_key_file(tmp_path / "record.key")
    return tmp_path / "record.key"


async def soak(
    broker: KafkaBroker, tmp_path: Path, topics: Topics, inputs: dict[str, str]
) -> tuple[Chaos, Journals, list[RequestRecord], float]:
    """The soak on CLI workers: what it did, every journal as the log holds it at the end
    (writes after the last run completed included), the provider's requests, the duration."""
    log = await KafkaLog.open(broker.bootstrap)
    try:
        await ensure_topics(log, partitions=PARTITIONS, topics=topics)
        with FakeLLMServer(latency_s=LATENCY_S) as server:
            fleet = fleet_for(broker, tmp_path, topics.commands.removesuffix(".commands"), server)
            chaos = Chaos(fleet, Client(log, topics=topics), inputs)
            try:
                elapsed = await run_soak(chaos, Journals(log, topics.events))
            finally:
                fleet.stop_all()
            requests = server.requests()
        journals = Journals(log, topics.events)
        await journals.refresh()
        return chaos, journals, requests, elapsed
    finally:
        await log.close()


async def test_cli_workers_with_kills_and_a_pause_bill_every_call_once(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    prefix = f"clisoak{uuid.uuid4().hex[:10]}"
    inputs = {f"{prefix}-{i}": f"run {i}" for i in range(RUNS)}
    began = time.monotonic()
    ref = await reference(inputs, tmp_path / "reference")
    reference_s = time.monotonic() - began
    chaos, journals, requests, elapsed = await soak(
        kafka_broker, tmp_path, prefixed_topics(prefix), inputs
    )
    assert len(chaos.kills) >= 3 and chaos.paused, "the soak must kill and pause busy workers"

    late, zombie_ok = late_requests(journals, requests, chaos.fleet, chaos.paused)
    problems: Problems = {
        "runs not completed": [
            f"{RUNS - len(journals.completed)} of {RUNS} within {DEADLINE_S:g} s"
        ]
        if len(journals.completed) < RUNS
        else [],
        **journal_problems(journals, inputs, RecordSigner.from_file(record_key(tmp_path))),
        **late,
        **cost_problems(journals, ref),
        **replay_problems(journals, make_app("http://127.0.0.1:9/v1"), inputs),
        "worker exited by itself": [
            f"{i.tag} (pid {i.pid}) status {i.proc.returncode}" for i in chaos.self_exited
        ],
    }
    causes = resend_causes(chaos.fleet, requests)
    print(
        f"cli soak: {RUNS} runs x {CALLS} calls on {PARTITIONS} partitions in {elapsed:.1f} s "
        f"(reference {reference_s:.1f} s); {len(chaos.kills)} SIGKILLs, {len(chaos.paused)} "
        f"SIGSTOP of {PAUSE_S:g} s, {len(chaos.self_exited)} self-exits; {len(requests)} "
        f"requests, {sum(causes.values())} re-sends: "
        + ", ".join(f"{cause} {n}" for cause, n in sorted(causes.items()))
        + f"; zombie requests begun before its pause {zombie_ok}"
    )
    found = summary(problems)
    if found:
        for inc in chaos.fleet.all[-6:]:
            print(f"----- tail of {inc.tag} ({inc.log_path}) -----\n{inc.tail(25)}")
    assert not found, f"logs in {chaos.fleet.logs}\n{found}"
