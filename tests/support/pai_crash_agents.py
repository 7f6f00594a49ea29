"""A pydantic-ai agent for crash tests, run by a CLI worker process that SIGKILLs itself.

    WAKELINE_TEST_LLM_URL=URL WAKELINE_TEST_CRASH=MODE:N python -m wakeline.testing.worker_process \
        tests/support/pai_crash_agents.py:app_from_env() --log-hook .../crash_agents.py:arm

The modes are those of ``crash_agents.py``; the model-side kill points wrap pydantic-ai's own
model port (a ``WrapperModel`` around its ``OpenAIChatModel``), as the framework sees it.  The
agent's tool appends each call's idempotency key to ``$WAKELINE_TEST_DATA/charges.txt``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable
from typing import Any

from crash_agents import CRASH_ENV, die
from pydantic_ai import Agent, DeferredToolRequests
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings
from workers import llm_url, log_charge

from wakeline import App, Context
from wakeline.adapters.pydantic_ai import WakelineDurability, durable, run_with_approvals

RUNS = 2  # agent runs per wakeline run; each makes two model calls around one tool call


class KillingModel(WrapperModel):
    def __init__(self, wrapped: OpenAIChatModel, mode: str, at: int) -> None:
        super().__init__(wrapped)
        self._mode, self._at, self._calls = mode, at, 0

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        self._calls += 1
        if self._mode == "before_send" and self._calls == self._at:
            die()
        response = await super().request(messages, model_settings, model_request_parameters)
        if self._mode == "after_answer" and self._calls == self._at:
            die()
        return response


def make_app(base_url: str, mode: str = "", at: int = 0) -> App:
    model: Any = OpenAIChatModel(
        "gpt-4o-mini", provider=OpenAIProvider(base_url=base_url, api_key="test-key")
    )
    if mode:
        model = KillingModel(model, mode, at)
    agent = Agent(model, name="billing", capabilities=[WakelineDurability()])

    @agent.tool_plain
    def charge(n: int) -> str:
        log_charge()
        return f"charged {n}"  # the key differs per run: not in the conversation

    app = App(default_provider="openai", default_model="gpt-4o-mini")

    @app.agent
    async def biller(ctx: Context, goal: str) -> list[str]:
        outputs = []
        with durable(ctx):
            for step in range(RUNS):
                result = await agent.run(f"step {step} of {goal}")
                outputs.append(str(result.output))
        return outputs

    add_approver(app, model)
    add_streamer(app, model)
    return app


def add_streamer(app: App, model: Any) -> None:
    """``streamer``: a pydantic-ai agent run with an ``event_stream_handler``, so its model
    request streams."""

    async def handler(run_context: Any, events: AsyncIterable[Any]) -> None:
        async for _ in events:
            pass

    agent = Agent(model, name="streamer", capabilities=[WakelineDurability()])

    @app.agent
    async def streamer(ctx: Context, prompt: str) -> str:
        with durable(ctx):
            return str((await agent.run(prompt, event_stream_handler=handler)).output)


def add_approver(app: App, model: Any) -> None:
    """``approver``: a pydantic-ai agent whose ``refund`` tool needs a person's approval
    (pydantic-ai's ``requires_approval``); the tool logs its idempotency key when it runs."""
    refunds = Agent(
        model,
        name="refunds",
        output_type=[str, DeferredToolRequests],
        capabilities=[WakelineDurability()],
    )

    @refunds.tool_plain(requires_approval=True)
    def refund(n: int) -> str:
        log_charge()
        return f"refunded {n}"

    @app.agent
    async def approver(ctx: Context, goal: str) -> str:
        return str((await run_with_approvals(ctx, refunds, f"refund {goal}")).output)


def app_from_env() -> App:
    mode, _, at = os.environ.get(CRASH_ENV, "").partition(":")
    kill = mode if mode in ("before_send", "after_answer") else ""
    return make_app(llm_url(), kill, int(at or 0))


TARGET = "pai_crash_agents.py:app_from_env()"
