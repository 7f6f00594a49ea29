"""An app whose runs carry hostile text in every field the CLI prints (mock model, no network):
rich markup, brackets, a terminal hyperlink, escape sequences and a bidi override."""

from __future__ import annotations

from typing import Any

from wakeline import App
from wakeline.providers.mock import MockModel

HOSTILE = (
    "[/INST] [a, b] [link=https://evil.example]click[/link] [/] [bold]x"
    " \x1b[2J\x1b]0;pwned\x07\x1b]8;;https://evil.example\x1b\\ \u202eend"
)
"""What must print as text: the markup parts literally, the control characters not at all."""

app = App(default_provider="mock", default_model=f"m{HOSTILE}")
app.provider("mock", MockModel(replies=[HOSTILE]))


@app.tool(name=f"tool{HOSTILE}")
def echo(text: str) -> str:
    return text


@app.agent(name=f"agent{HOSTILE}")
async def hostile(ctx: Any, text: str) -> str:
    await ctx.llm(text, max_tokens=10)
    await ctx.tool(f"tool{HOSTILE}", text=text)
    await ctx.step(f"step{HOSTILE}", lambda: text)
    decision = await ctx.approval(f"gate{HOSTILE}", {"text": text}, timeout=0)
    return f"{text} {decision.reason}"


@app.agent
async def fails(ctx: Any, text: str) -> str:
    raise RuntimeError(text)
