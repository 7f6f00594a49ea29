"""Versions of one agent for the version tests: ``v1()`` is the old prompt, ``v2()`` the
edited one, ``both()`` has them side by side.  ``summarize`` waits at gate ``start``, asks the
model (the fake server at ``$WAKELINE_TEST_LLM_URL``), waits at gate ``finish``, returns the
model's text."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from workers import llm_url

from wakeline import App, Context
from wakeline.providers.openai_compat import OpenAICompatProvider

PROMPTS = {"1": "Summarize {topic}.", "2": "Summarize {topic} in five words."}


def make_app(*versions: str) -> App:
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    app.provider("openai", OpenAICompatProvider(base_url=llm_url(), api_key="test-key"))
    for version in versions:
        app.agent(_summarize(PROMPTS[version]), name="summarize", version=version)
    return app


def _summarize(prompt: str) -> Callable[[Context, str], Awaitable[str]]:
    async def summarize(ctx: Context, topic: str) -> str:
        await ctx.approval("start")
        reply = await ctx.llm(prompt.format(topic=topic))
        await ctx.approval("finish")
        return reply.text

    return summarize


def v1() -> App:
    return make_app("1")


def v2() -> App:
    return make_app("2")


def both() -> App:
    return make_app("1", "2")
