"""The conformance suite's scenarios: the native agent and every framework adapter, each an
app in a module of this directory served by CLI worker processes (``tests/adapters/``).

Each app has the scenario's ``agent`` (``calls`` model calls, a side-effecting tool logging its
idempotency key to ``charges.txt`` ``charges`` times), an ``approver`` (a ``refund`` tool that
needs a person: gate ``tool:refund``) and a ``streamer`` (one streamed model call of its
input).  A new adapter adds its entry here.
"""

from __future__ import annotations

import lc_crash_agents
import oai_crash_agents
import pai_crash_agents
from crash_runs import Scenario

SCENARIOS = {
    "native": Scenario(
        target="crash_agents.py:app_from_env()",
        agent="planner",
        input="ship the release",
        calls=4,
        crash_at=2,
    ),
    "pydantic-ai": Scenario(
        target=pai_crash_agents.TARGET,
        agent="biller",
        input="the invoice",
        calls=2 * pai_crash_agents.RUNS,
        crash_at=2,  # the answer after the first tool call
        charges=pai_crash_agents.RUNS,
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
