"""The queries of the runs and steps views: run rows, step rows, pages and filters."""

from __future__ import annotations

from decimal import Decimal

import pytest
from projection_scenario import (
    append_scenario,
    as_json,
    ids,
    projections,
    started,
)

from wakeline.projections import EVENTS_TOPIC
from wakeline.projections.queries import Queries
from wakeline.projections.rows import Failure, Page, RunRow, StepRow, Tokens, dump, load
from wakeline.projections.runner import catch_up
from wakeline.projections.store import ProjectionStore
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import RunCompleted
from wakeline.topics.embedded.log import EmbeddedLog


async def test_runs_steps_journal_and_queries(log: EmbeddedLog, store: ProjectionStore) -> None:
    journals = await append_scenario(log)
    folded = await catch_up(log, store, projections())
    assert folded == sum(len(j.events) for j in journals.values()) + 2
    q = Queries(store)

    done = as_json(q.get_run("r-done"))
    assert done["status"] == "completed"
    assert (done["agent"], done["tenant"], done["input"]) == ("writer", "acme", '{"q":1}')
    assert done["output"] == '{"answer":42}'
    assert done["tokens"] == {
        "input": 31,
        "output": 13,
        "cached_input": 2,
        "cache_write": 1,
        "reasoning": 3,
    }
    assert Decimal(done["cost_usd"]) == Decimal("0.00175")
    assert done["unpriced_calls"] == 1
    assert (done["model_calls"], done["tool_calls"], done["steps"]) == (3, 1, 4)
    assert (done["started_ms"], done["ended_ms"]) == (10_000, 10_090)
    assert done["last_seq"] == 9
    assert not any(key.startswith("_") for key in done)

    location = q.run_start_offset("r-done")
    assert location is not None
    partition, offset = location
    [first] = await log.read(EVENTS_TOPIC, partition, offset, max_records=1)
    assert event_codec().decode(first.value) == journals["r-done"].events[0]

    failed = as_json(q.get_run("r-fail"))
    assert failed["status"] == "failed"
    assert failed["error"] == {"type": "PermissionError", "message": "nope"}
    cancelled = as_json(q.get_run("r-cancel"))
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelled_by"] == "cli"
    assert cancelled["error"] == {"type": "cancelled", "message": "user asked"}
    assert as_json(q.get_run("r-wait"))["status"] == "waiting"
    assert as_json(q.get_run("r-par"))["status"] == "running"
    drifted = as_json(q.get_run("r-drift"))
    assert drifted["status"] == "drifted"
    assert drifted["drift"]["seq"] == 1 and drifted["drift"]["requested"] == "model gpt-y"
    ghost = as_json(q.get_run("r-ghost"))
    assert ghost["status"] == "rejected"
    assert ghost["rejection"]["reason"] == "unknown run"
    assert ghost["started_ms"] == 70_000 and ghost["partition"] is None
    assert q.get_run("nope") is None


async def test_steps_rows(log: EmbeddedLog, store: ProjectionStore) -> None:
    await append_scenario(log)
    await catch_up(log, store, projections())
    q = Queries(store)

    par = [dump(s) for s in q.steps("r-par")]
    assert [s["seq"] for s in par] == [1, 2, 3]
    model, tool, step = par
    assert (model["kind"], model["status"]) == ("model", "failed")
    assert model["error"]["status_code"] == 429
    assert model["latency_us"] == 900 and model["result_seq"] == 6
    assert (tool["kind"], tool["name"], tool["status"], tool["response"]) == (
        "tool",
        "calc",
        "completed",
        "2",
    )
    assert tool["idempotency_key"] == "r-par:2" and tool["latency_us"] == 300
    assert (step["kind"], step["name"], step["status"], step["response"]) == (
        "step",
        "load",
        "completed",
        '"loaded"',
    )
    assert step["latency_us"] == 10_000  # no latency in StepCompleted: from the event times

    done = [dump(s) for s in q.steps("r-done")]
    assert [s["kind"] for s in done] == ["model", "tool", "model", "model"]
    assert done[0]["usage"] == {
        "input": 10,
        "output": 5,
        "cached_input": 2,
        "cache_write": 1,
        "reasoning": 3,
    }
    assert done[0]["cost_usd"] == "0.0015" and done[3]["cost_usd"] is None
    assert done[0]["request"] == '{"messages":[]}' and done[0]["response"] == '{"content":"hi"}'
    assert done[0]["attempt"] == 1 and done[0]["provider"] == "openai"

    value, timer = map(dump, q.steps("r-wait"))
    assert (value["kind"], value["name"], value["status"], value["response"]) == (
        "value",
        "CLOCK",
        "recorded",
        "40010",
    )
    assert (timer["kind"], timer["name"], timer["status"]) == ("timer", "sleep", "open")
    assert timer["fire_at_ms"] == 99_000


async def test_list_runs_pagination_and_filters(log: EmbeddedLog, store: ProjectionStore) -> None:
    for i in range(7):
        j = started(f"run-{i}", 1_000 * (i + 1), agent="a" if i % 2 else "b")
        if i % 3 == 0:
            j.add(RunCompleted("null"))
        await log.append(EVENTS_TOPIC, j.records())
    same_time = started("run-x", 4_000)
    await log.append(EVENTS_TOPIC, same_time.records())
    await catch_up(log, store, projections())
    q = Queries(store)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        rows, cursor = ids(q.list_runs(limit=3, cursor=cursor))
        pages += 1
        seen += rows
        if cursor is None:
            break
    assert pages == 3
    assert seen == ["run-6", "run-5", "run-4", "run-3", "run-x", "run-2", "run-1", "run-0"]

    rows, cursor = ids(q.list_runs(status="completed", limit=2))
    assert rows == ["run-6", "run-3"] and cursor is not None
    rows, cursor = ids(q.list_runs(status="completed", limit=2, cursor=cursor))
    assert rows == ["run-0"] and cursor is None
    assert ids(q.list_runs(agent="a"))[0] == ["run-5", "run-3", "run-1"]
    assert ids(q.list_runs(since_ms=3_000, until_ms=5_000))[0] == ["run-3", "run-x", "run-2"]
    assert q.list_runs(tenant="nobody") == Page(())
    with pytest.raises(ValueError):
        q.list_runs(cursor="bogus")


def test_rows_round_trip_their_json() -> None:
    gate = StepRow("r", 3, "gate", "pay", timeout_ms=None, request="{}")
    model = StepRow("r", 1, "model", "m", usage=Tokens(input=2) + Tokens(input=1, output=4))
    assert "timeout_ms" in dump(gate) and "target" not in dump(gate)
    assert "timeout_ms" not in dump(model) and dump(model)["usage"]["input"] == 3
    page = Page((model, gate), "cursor")
    assert dump(page) == {"items": [dump(model), dump(gate)], "next_cursor": "cursor"}
    assert [load(StepRow, item) for item in dump(page)["items"]] == [model, gate]
    run = RunRow("r", status="failed", error=Failure("E", "bad"), tokens=Tokens(output=1))
    assert load(RunRow, {**dump(run), "_outcome": "failed"}) == run and run.ended
