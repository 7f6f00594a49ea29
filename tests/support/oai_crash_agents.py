"""An OpenAI Agents SDK agent for crash tests, run by a CLI worker process that SIGKILLs itself.

    WAKELINE_TEST_LLM_URL=URL WAKELINE_TEST_CRASH=MODE:N python -m wakeline.testing.worker_process \
        tests/support/oai_crash_agents.py:app_from_env() --log-hook .../crash_agents.py:arm

The modes are those of ``crash_agents.py``; the model-side kill points wrap the SDK's own model
port (its ``OpenAIChatCompletionsModel``, subclassed), as the SDK's runner sees it.  The
agent's tool appends each call's idempotency key to ``$WAKELINE_TEST_DATA/charges.txt``.
"""

from __future__ import annotations

import os
from typing import Any

from agents import (
    Agent,
    Model,
    ModelResponse,
    OpenAIChatCompletionsModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from crash_agents import CRASH_ENV, die
from openai import AsyncOpenAI
from workers import llm_url, log_charge

from wakeline import App, Context
from wakeline.adapters.openai_agents import durable

RUNS = 2  # SDK runs per wakeline run; each makes two model calls around one tool call


class KillingModel(OpenAIChatCompletionsModel):
    def __init__(self, name: str, client: AsyncOpenAI, mode: str, at: int) -> None:
        super().__init__(name, openai_client=client)
        self._mode, self._at, self._calls = mode, at, 0

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        self._calls += 1
        if self._mode == "before_send" and self._calls == self._at:
            die()
        response = await super().get_response(*args, **kwargs)
        if self._mode == "after_answer" and self._calls == self._at:
            die()
        return response


def make_app(base_url: str, mode: str = "", at: int = 0) -> App:
    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=base_url, api_key="test-key", max_retries=0)
    model = KillingModel("gpt-4o-mini", client, mode, at)  # with no mode, the SDK's model

    @function_tool
    def charge(n: int) -> str:
        """Charge the card."""
        log_charge()
        return f"charged {n}"  # the key differs per run: not in the conversation

    agent = Agent(name="billing", instructions="You bill.", model=model, tools=[charge])
    app = App(default_provider="openai", default_model="gpt-4o-mini")

    @app.agent
    async def biller(ctx: Context, goal: str) -> list[str]:
        outputs = []
        with durable(ctx):
            for step in range(RUNS):
                result = await Runner.run(agent, f"step {step} of {goal}")
                outputs.append(str(result.final_output))
        return outputs

    add_approver(app, model)
    add_streamer(app, model)
    return app


def add_streamer(app: App, model: Model) -> None:
    """``streamer``: an SDK agent run with ``Runner.run_streamed``, so its model request
    streams."""
    agent = Agent(name="streamer", model=model)

    @app.agent
    async def streamer(ctx: Context, prompt: str) -> str:
        with durable(ctx):
            result = Runner.run_streamed(agent, prompt)
            async for _ in result.stream_events():
                pass
        return str(result.final_output)


def add_approver(app: App, model: Model) -> None:
    """``approver``: an SDK agent whose ``refund`` tool needs a person's approval (the SDK's
    ``needs_approval``); the tool logs its idempotency key when it runs."""

    @function_tool(needs_approval=True)
    def refund(n: int) -> str:
        """Refund the order."""
        log_charge()
        return f"refunded {n}"

    refunds = Agent(name="refunds", model=model, tools=[refund])

    @app.agent
    async def approver(ctx: Context, goal: str) -> str:
        with durable(ctx):
            return str((await Runner.run(refunds, f"refund {goal}")).final_output)


def app_from_env() -> App:
    mode, _, at = os.environ.get(CRASH_ENV, "").partition(":")
    kill = mode if mode in ("before_send", "after_answer") else ""
    return make_app(llm_url(), kill, int(at or 0))


TARGET = "oai_crash_agents.py:app_from_env()"
