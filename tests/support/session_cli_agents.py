"""A chat agent on the mock model whose runs are session turns, for the CLI tests."""

from __future__ import annotations

from wakeline import App, Context
from wakeline.providers.mock import MockModel

app = App(default_provider="mock", default_model="mock-1")
app.provider("mock", MockModel())


@app.agent
async def talk(ctx: Context, text: str) -> str:
    reply = await ctx.llm([*ctx.session.messages(), {"role": "user", "content": text}])
    return f"{len(ctx.session.history)} earlier: {reply.text}"
