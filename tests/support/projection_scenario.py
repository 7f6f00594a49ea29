"""Hand-built journals and notices for the projection tests, and how to fold them."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from wakeline.projections import EVENTS_TOPIC, NOTICES_TOPIC
from wakeline.projections.journal import JournalProjection
from wakeline.projections.rows import Page, RunRow, dump
from wakeline.projections.runs import RunsProjection
from wakeline.projections.steps import StepsProjection
from wakeline.projections.store import (
    JsonObject,
    Projection,
    ProjectionStore,
)
from wakeline.schemas.codec import event_codec, notice_codec
from wakeline.schemas.commands import CommandRejected, Notice, NoticePayload, RunDrifted
from wakeline.schemas.events import (
    Event,
    EventPayload,
    ModelCallCompleted,
    ModelCallFailed,
    ModelCallRequested,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
    StepCompleted,
    StepRequested,
    TimerScheduled,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ValueRecorded,
)
from wakeline.schemas.usage import Usage
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.port import OutRecord, TopicSpec

PARTITIONS = 3


def projections(store: ProjectionStore | None = None) -> list[Projection]:
    return [RunsProjection(), StepsProjection(), JournalProjection(store)]


async def open_log(path: Path) -> EmbeddedLog:
    log = await EmbeddedLog.open(path)
    await log.create_topics(
        [TopicSpec(EVENTS_TOPIC, PARTITIONS), TopicSpec(NOTICES_TOPIC, PARTITIONS)]
    )
    return log


@dataclass
class Journal:
    """Builds one run's events by hand."""

    run_id: str
    t: int = 1_000
    seq: int = 0
    events: list[Event] = field(default_factory=list)

    def add(self, payload: EventPayload, dt: int = 10) -> int:
        self.t += dt
        self.events.append(Event(self.run_id, self.seq, self.t, "w1", payload))
        self.seq += 1
        return self.seq - 1

    def records(self) -> list[OutRecord]:
        return [event_record(e) for e in self.events]


def event_record(event: Event) -> OutRecord:
    return OutRecord(key=event.run_id.encode(), value=event_codec().encode(event))


def notice_record(run_id: str, time_ms: int, payload: NoticePayload) -> OutRecord:
    value = notice_codec().encode(Notice(run_id, time_ms, "w1", payload))
    return OutRecord(key=run_id.encode(), value=value)


def started(run_id: str, t: int, agent: str = "writer", tenant: str = "acme") -> Journal:
    j = Journal(run_id, t=t)
    j.add(RunStarted(agent=agent, input='{"q":1}', tenant=tenant, command_id=f"c-{run_id}"), 0)
    return j


def model_req(model: str = "gpt-x") -> ModelCallRequested:
    return ModelCallRequested("openai", model, "d" * 8, '{"messages":[]}')


def model_done(step: int, cost: Decimal | None, usage: Usage) -> ModelCallCompleted:
    return ModelCallCompleted(
        step,
        "openai",
        "gpt-x",
        f"resp-{step}",
        "gpt-x-1",
        "stop",
        '{"content":"hi"}',
        usage,
        1500,
        cost,
    )


def scenario() -> tuple[dict[str, Journal], list[OutRecord]]:
    done = started("r-done", 10_000)
    s1 = done.add(model_req())
    done.add(model_done(s1, Decimal("0.0015"), Usage(10, 5, 2, 1, 3)))
    s2 = done.add(ToolCallRequested("search", '{"q":"x"}', "a" * 8, "r-done:2", True))
    done.add(ToolCallCompleted(s2, '{"hits":1}', 700))
    s3 = done.add(model_req())
    done.add(model_done(s3, Decimal("0.00025"), Usage(20, 7, 0, 0, 0)))
    s4 = done.add(model_req())
    done.add(model_done(s4, None, Usage(1, 1, 0, 0, 0)))
    done.add(RunCompleted('{"answer":42}'))

    failed = started("r-fail", 20_000)
    s = failed.add(ToolCallRequested("rm", "{}", "b" * 8, "r-fail:1", False))
    failed.add(ToolCallFailed(s, "PermissionError", "nope"))
    failed.add(RunFailed("PermissionError", "nope"))

    cancelled = started("r-cancel", 30_000, agent="other")
    cancelled.add(StepRequested("fetch"))
    cancelled.add(RunCancelled("user asked", by="cli"))

    waiting = started("r-wait", 40_000)
    waiting.add(ValueRecorded("CLOCK", "40010"))
    waiting.add(TimerScheduled(fire_at_ms=99_000, duration_ms=59_000, purpose="sleep"))

    drifted = started("r-drift", 50_000)
    drifted.add(model_req())

    par = started("r-par", 60_000, tenant="beta")
    m = par.add(model_req())
    t = par.add(ToolCallRequested("calc", '{"x":1}', "c" * 8, "r-par:2", True))
    s = par.add(StepRequested("load"))
    par.add(StepCompleted(s, '"loaded"'))
    par.add(ToolCallCompleted(t, "2", 300))
    par.add(ModelCallFailed(m, "RateLimit", "slow down", True, 429, 900))

    notices = [
        notice_record("r-drift", 50_500, RunDrifted(1, "model gpt-x", "model gpt-y", "drift!")),
        notice_record("r-ghost", 70_000, CommandRejected("c-ghost", "unknown run")),
    ]
    journals = {j.run_id: j for j in (done, failed, cancelled, waiting, drifted, par)}
    return journals, notices


async def append_scenario(log: EmbeddedLog) -> dict[str, Journal]:
    journals, notices = scenario()
    for j in journals.values():
        await log.append(EVENTS_TOPIC, j.records())
    await log.append(NOTICES_TOPIC, notices)
    return journals


def as_json(row: RunRow | None) -> JsonObject:
    """The JSON of a run row that must be there (the API's and the CLI's shape)."""
    assert row is not None
    return dump(row)


def ids(page: Page[RunRow]) -> tuple[list[str], str | None]:
    return [r.run_id for r in page.items], page.next_cursor


def snapshot(store: ProjectionStore) -> dict[bytes, bytes]:
    return dict(store.items())
