"""The agent of the worker processes on Kafka in the soak, zombie and recovery tests.

``tenstep`` makes 10 sequential model calls through the real OpenAI SDK against the fake
server (its base URL from ``$WAKELINE_TEST_LLM_URL``).  :class:`fleet.Fleet` runs it through
:mod:`wakeline.testing.worker_process` on topics ``PREFIX.commands`` etc., so tests sharing a
broker do not meet; with ``WAKELINE_TEST_SPANS=FILE`` in the environment a worker's spans are
written to ``FILE`` as each one ends, so they outlive a SIGKILL.
"""

from __future__ import annotations

from typing import Any

from workers import llm_url

from wakeline import App
from wakeline.providers.openai_compat import OpenAICompatProvider
from wakeline.testing.harness import prefixed_topics
from wakeline.topics.specs import Topics

CALLS = 10


def topics_for(prefix: str) -> Topics:
    return prefixed_topics(prefix)


def make_app(base_url: str) -> App:
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    app.provider("openai", OpenAICompatProvider(base_url=base_url, api_key="test"))

    @app.agent
    async def tenstep(ctx: Any, name: str) -> list[str]:
        replies: list[str] = []
        for i in range(CALLS):
            reply = await ctx.llm(f"{name}: step {i}", max_tokens=32)
            replies.append(reply.text)
        return replies

    return app


def app_from_env() -> App:
    return make_app(llm_url())
