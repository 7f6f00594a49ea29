"""The app CLI workers run in the CLI soak test and the rebalance benchmark.

    WAKELINE_SOAK_LLM_URL=http://127.0.0.1:PORT/w0/v1 \\
        python -m wakeline.cli --kafka B worker wakeline/testing/soak_agents.py

``tenstep`` makes :data:`CALLS` sequential model calls through the real OpenAI SDK
(:class:`OpenAICompatProvider`) against :class:`wakeline.testing.fake_llm.FakeLLMServer`; each
prompt is unique per run and step, so a second request with the same prompt is a re-send.
The base URL comes from ``$WAKELINE_SOAK_LLM_URL``: give each worker process its own path
(``/<tag>/v1``) and the fake server's request log shows which process sent each request.
"""

from __future__ import annotations

import os

from wakeline import App, Context
from wakeline.providers.openai_compat import OpenAICompatProvider

CALLS = 10
AGENT = "tenstep"
URL_ENV = "WAKELINE_SOAK_LLM_URL"


def prompt(name: str, step: int) -> str:
    """The prompt of ``step`` of the run started with input ``name``."""
    return f"{name}: step {step}"


def make_app(base_url: str) -> App:
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    app.provider("openai", OpenAICompatProvider(base_url=base_url, api_key="test"))

    async def tenstep(ctx: Context, name: str) -> list[str]:
        replies: list[str] = []
        for i in range(CALLS):
            reply = await ctx.llm(prompt(name, i), max_tokens=32)
            replies.append(reply.text)
        return replies

    app.agent(tenstep, name=AGENT)
    return app


# the port is never reached when the variable is unset (replays have no provider at all)
app = make_app(os.environ.get(URL_ENV, "http://127.0.0.1:9/v1"))
