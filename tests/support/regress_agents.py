"""An app for the regression-bundle tests (mock model, no network): ``app`` is the recorded
code; the factories are edits of it, one that changes a prompt and one that does not change
anything the run journals."""

from __future__ import annotations

from typing import Any

from wakeline import App, Context
from wakeline.providers.mock import MockModel

PROMPT = "Summarize {topic} in one line."


def make_app(prompt: str = PROMPT, *, extra: bool = False) -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())

    @app.agent
    async def summarize(ctx: Context, topic: str) -> dict[str, Any]:
        first = await ctx.llm(prompt.format(topic=topic), max_tokens=32)
        second = await ctx.llm(f"Now a title for: {first.text}", max_tokens=8)
        return {"summary": first.text, "title": second.text}

    if extra:  # an unrelated change: a new agent, a helper, a log line elsewhere

        @app.agent
        async def greet(ctx: Context, name: str) -> str:
            return f"hello {name}"

    return app


app = make_app()


def unrelated_change() -> App:
    return make_app(extra=True)


def changed_prompt() -> App:
    return make_app("Summarize {topic} in one short, friendly line.")
