"""The rest of the conformance suite, for the native agent and every framework adapter: the
clean run replays byte-identically with no provider reachable, and a run budget stops a call
before it is sent (the fake server never sees it) until the budget is raised from another
process, after which the run ends as a clean run does without redoing anything."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from crash_runs import Scenario, load_app, served
from test_crash_conformance import SCENARIOS

from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import Budget, BudgetExceeded, Event
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
