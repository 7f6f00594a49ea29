"""An app calling a model nobody priced (and one that is priced): for the CLI's cost display."""

from __future__ import annotations

from typing import Any

from wakeline import App
from wakeline.providers.mock import MockModel

app = App(default_provider="mock", default_model="local-llama")  # no price for this name
app.provider("mock", MockModel())


@app.agent
async def unpriced(ctx: Any, _: None) -> str:
    return str((await ctx.llm("hi", max_tokens=5)).text)


@app.agent
async def mixed(ctx: Any, _: None) -> str:
    await ctx.llm("hi", max_tokens=5)
    return str((await ctx.llm("again", model="mock-1", max_tokens=5)).text)
