"""A LangChain agent for crash tests, run by a CLI worker process that SIGKILLs itself.

    WAKELINE_TEST_LLM_URL=URL WAKELINE_TEST_CRASH=MODE:N python -m wakeline.testing.worker_process \
        tests/support/lc_crash_agents.py:app_from_env() --log-hook .../crash_agents.py:arm

The modes are those of ``crash_agents.py``; the model-side kill points wrap LangChain's own
model port (a subclass of ``ChatOpenAI`` overriding ``_agenerate``), as the framework sees it.
The agent's tool appends each call's idempotency key to ``$WAKELINE_TEST_DATA/charges.txt``.
"""

from __future__ import annotations

import os
from typing import Any

from crash_agents import CRASH_ENV, die
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from workers import llm_url, log_charge

from wakeline import App, Context
from wakeline.adapters.langchain import WakelineMiddleware, ainvoke, durable

RUNS = 2  # agent runs per wakeline run; each makes two model calls around one tool call
CALLS = [0]  # model calls this process made


class KillingChatOpenAI(ChatOpenAI):
    kill_mode: str = ""
    kill_at: int = 0

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> ChatResult:
        CALLS[0] += 1
        if self.kill_mode == "before_send" and CALLS[0] == self.kill_at:
            die()
        result = await super()._agenerate(messages, stop, **kwargs)
        if self.kill_mode == "after_answer" and CALLS[0] == self.kill_at:
            die()
        return result


@tool
def charge(n: int) -> str:
    """Charge the card n times."""
    log_charge()
    return f"charged {n}"  # the key differs per run: not in the conversation


def make_app(base_url: str, mode: str = "", at: int = 0) -> App:
    model = KillingChatOpenAI(
        model="gpt-4o-mini",
        base_url=base_url,
        api_key="test-key",
        max_retries=0,  # wakeline retries, on durable timers
        kill_mode=mode,
        kill_at=at,
    )
    agent = create_agent(model, [charge], middleware=[WakelineMiddleware()])
    app = App(default_provider="openai", default_model="gpt-4o-mini")

    @app.agent
    async def biller(ctx: Context, goal: str) -> list[str]:
        outputs = []
        with durable(ctx):
            for step in range(RUNS):
                prompt = {"role": "user", "content": f"step {step} of {goal}"}
                state = await agent.ainvoke({"messages": [prompt]})
                outputs.append(str(state["messages"][-1].text))
        return outputs

    add_approver(app, model)
    add_streamer(app, base_url)
    return app


def add_approver(app: App, model: ChatOpenAI) -> None:
    """``approver``: an agent whose ``refund`` tool is reviewed by LangChain's
    ``HumanInTheLoopMiddleware`` (gate ``tool:refund``); the tool logs its idempotency key
    when it runs."""

    @tool
    def refund(n: int) -> str:
        """Refund the order."""
        log_charge()
        return f"refunded {n}"

    review = HumanInTheLoopMiddleware(interrupt_on={"refund": True})
    agent = create_agent(model, [refund], middleware=[review, WakelineMiddleware()])

    @app.agent
    async def approver(ctx: Context, goal: str) -> str:
        prompt = {"role": "user", "content": f"refund {goal}"}
        state = await ainvoke(ctx, agent, {"messages": [prompt]})
        return str(state["messages"][-1].text)


def add_streamer(app: App, base_url: str) -> None:
    """``streamer``: an agent whose model streams (``streaming=True``)."""
    model = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=base_url,
        api_key="test-key",
        max_retries=0,
        streaming=True,
        stream_usage=True,
    )
    agent = create_agent(model, [], middleware=[WakelineMiddleware()])

    @app.agent
    async def streamer(ctx: Context, prompt: str) -> str:
        with durable(ctx):
            state = await agent.ainvoke({"messages": [{"role": "user", "content": prompt}]})
        return str(state["messages"][-1].text)


def app_from_env() -> App:
    mode, _, at = os.environ.get(CRASH_ENV, "").partition(":")
    kill = mode if mode in ("before_send", "after_answer") else ""
    return make_app(llm_url(), kill, int(at or 0))


TARGET = "lc_crash_agents.py:app_from_env()"
