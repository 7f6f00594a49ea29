"""SIGKILL a CLI worker process at each point of a model call; a fresh process resumes the
run.  The same scenario for a native agent and for every framework adapter.

The model is the official SDK (directly, or the framework's own model class over it) talking
to a local fake server that counts every request: no model call whose result was journaled
is ever sent again, the output and cost are the clean run's, seqs are dense, and a tool with
side effects ran once per call with its own idempotency key.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance import SCENARIOS
from crash_runs import Clean, Scenario

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
