"""SIGKILL a CLI worker process at each point of a model call; a fresh process resumes the
run.  The same scenario for a native agent and for every framework adapter.

The model is the official SDK (directly, or the framework's own model class over it) talking
to a local fake server that counts every request: no model call whose result was journaled
is ever sent again, the output and cost are the clean run's, seqs are dense, and a tool with
side effects ran once per call with its own idempotency key.
"""

from __future__ import annotations

from pathlib import Path

import lc_crash_agents
import oai_crash_agents
import pytest
from crash_runs import Clean, Scenario
from pai_crash_agents import RUNS, TARGET

SCENARIOS = {
    "native": Scenario(
        target="crash_agents.py:app_from_env()",
        agent="planner",
        input="ship the release",
        calls=4,
        crash_at=2,
    ),
    "pydantic-ai": Scenario(
        target=TARGET,
        agent="biller",
        input="the invoice",
        calls=2 * RUNS,
        crash_at=2,  # the answer after the first tool call
        charges=RUNS,
    ),
    "langchain": Scenario(
        target=lc_crash_agents.TARGET,
        agent="biller",
        input="the invoice",
        calls=2 * lc_crash_agents.RUNS,
        crash_at=2,  # the answer after the first tool call
        charges=lc_crash_agents.RUNS,
    ),
    "openai-agents": Scenario(
        target=oai_crash_agents.TARGET,
        agent="biller",
        input="the invoice",
        calls=2 * oai_crash_agents.RUNS,
        crash_at=2,  # the answer after the first tool call
        charges=oai_crash_agents.RUNS,
    ),
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> tuple[Scenario, Clean]:
    chosen = SCENARIOS[request.param]
    return chosen, chosen.clean()


@pytest.mark.parametrize("mode", ["before_send", "after_answer", "after_journal"])
async def test_sigkill_mid_call_resumes_without_resending_journaled_calls(
    tmp_path: Path, mode: str, scenario: tuple[Scenario, Clean]
) -> None:
    chosen, clean = scenario
    await chosen.crash_and_check(tmp_path, mode, clean)
