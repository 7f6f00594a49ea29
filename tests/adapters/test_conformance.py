"""The rest of the conformance suite, for the native agent and every framework adapter: the
clean run replays byte-identically with no provider reachable; a run budget stops a call
before it is sent (the fake server never sees it) until the budget is raised from another
process, after which the run ends as a clean run does without redoing anything; a tool that
needs a person's approval waits on a durable gate, decided from another process, and runs
once if approved, never if rejected; a streamed call's live deltas, joined, are the text
the journal keeps."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from conformance import SCENARIOS
from crash_runs import Scenario, load_app, served, stream_followed

from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    Budget,
    BudgetExceeded,
    Event,
    GateOpened,
    GateResolved,
)
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.waits import wait_for_event

pytestmark = pytest.mark.slow

Clean = tuple[Any, list[Event]]


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    chosen = SCENARIOS[request.param]
    with FakeLLMServer() as server:
        clean = asyncio.run(chosen.run(tmp_path_factory.mktemp("clean"), server, ""))
    return chosen, clean


def test_the_clean_run_replays_byte_identically_with_no_provider(
    scenario: tuple[Scenario, Clean],
) -> None:
    chosen, (_, events) = scenario
    raw = [event_codec().encode(e) for e in events]
    report = replay_journal(load_app(chosen.target), events[0].run_id, raw)
    assert report.identical, report
    assert report.ended and report.events == len(events)
    assert report.checked >= chosen.calls  # at least every model request, compared


async def test_a_run_budget_stops_the_next_call_before_it_is_sent(
    tmp_path: Path, scenario: tuple[Scenario, Clean]
) -> None:
    chosen, (clean_result, _) = scenario
    with FakeLLMServer() as server:
        async with served(tmp_path, server, chosen.target) as client:
            handle = await client.start_run(
                chosen.agent, chosen.input, budget=Budget(model_calls=1)
            )
            exceeded = await wait_for_event(client, handle.run_id, BudgetExceeded)
            assert isinstance(exceeded.payload, BudgetExceeded)
            assert exceeded.payload.metric == "model_calls"
            assert len(server.requests()) == 1  # the second call was never sent
            await client.raise_budget(handle.run_id, "model_calls", str(chosen.calls))
            result = await asyncio.wait_for(client.result(handle.run_id), 60)
        digests = [r.digest for r in server.requests()]
    assert result == clean_result
    assert len(digests) == len(set(digests)) == chosen.calls  # nothing was sent twice


@pytest.mark.parametrize("decision", ["approve", "reject"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_a_tool_waits_for_an_approval_decided_from_another_process(
    tmp_path: Path, name: str, decision: str
) -> None:
    chosen = SCENARIOS[name]
    charges = tmp_path / "charges.txt"
    with FakeLLMServer() as server:
        async with served(tmp_path, server, chosen.target) as client:
            handle = await client.start_run("approver", "order 7")
            gate = await wait_for_event(client, handle.run_id, GateOpened)
            assert isinstance(gate.payload, GateOpened) and gate.payload.name == "tool:refund"
            assert not charges.exists()  # the tool waits for the decision
            assert len(server.requests()) == 1
            if decision == "approve":
                await client.approve(handle.run_id, "tool:refund", reason="refund ok")
            else:
                await client.reject(handle.run_id, "tool:refund", reason="not this one")
            result = await asyncio.wait_for(client.result(handle.run_id), 60)
            events = [e async for e in client.events(handle.run_id)]
    [resolved] = [e.payload for e in events if isinstance(e.payload, GateResolved)]
    assert resolved.approved == (decision == "approve")
    assert isinstance(result, str) and result.startswith("fake reply")
    if decision == "approve":
        [key] = charges.read_text().split()  # ran once, with the run's idempotency key
        assert key.startswith(f"{handle.run_id}:")
    else:
        assert not charges.exists()
        sent = server.requests()[-1].body["messages"]
        assert "not this one" in str(sent[-1])  # the model was told why


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_streamed_deltas_joined_are_the_journaled_text(tmp_path: Path, name: str) -> None:
    chosen = SCENARIOS[name]
    with FakeLLMServer() as server:
        async with served(tmp_path, server, chosen.target) as client:
            joined, journaled = await stream_followed(client, server, "streamer")
        assert [r.stream for r in server.requests()] == [True]
    assert joined == journaled
