"""An agent whose model call streams, against the fake server at ``$WAKELINE_TEST_LLM_URL``
(read when the module is imported: ``wakeline run stream_agents.py:storyteller``)."""

from __future__ import annotations

from typing import Any

from workers import llm_url

from wakeline import App
from wakeline.providers import OpenAICompatProvider


def app_from_env() -> App:
    app = App(default_provider="fake", default_model="mock-1")
    app.provider("fake", OpenAICompatProvider(base_url=llm_url(), name="fake"))

    @app.agent
    async def storyteller(ctx: Any, topic: str) -> str:
        reply = await ctx.llm(f"tell me about {topic} " * 3, stream=True, max_tokens=60)
        return str(reply.text)

    return app


app = app_from_env()
