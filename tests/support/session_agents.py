"""A chat agent whose turns are the turns of a durable session (``ctx.session``), for the
session tests; ``app_from_env()`` is the crash tests' app (see :mod:`crash_agents`) with it."""

from __future__ import annotations

import os
from typing import Any

from crash_agents import CRASH_ENV, KillingProvider
from workers import llm_url

from wakeline import App, Context
from wakeline.providers.openai_compat import OpenAICompatProvider


def make_app(base_url: str, mode: str = "", at: int = 0) -> App:
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    provider = OpenAICompatProvider(base_url=base_url, api_key="test-key")
    app.provider("openai", KillingProvider(provider, mode, at) if mode else provider)

    @app.agent
    async def chat(ctx: Context, text: str) -> str:
        """Two model calls a turn: an answer with the session's earlier turns, then a check."""
        messages: list[dict[str, Any]] = [*ctx.session.messages()]
        messages.append({"role": "user", "content": f"turn {ctx.session.turn}: {text}"})
        answer = await ctx.llm(messages, max_tokens=32)
        check = await ctx.llm([*messages, answer.message, {"role": "user", "content": "ok?"}])
        return f"{answer.text} / {check.text}"

    @app.agent
    async def gated(ctx: Context, text: str) -> str:
        """A turn that waits for a person before it ends."""
        await ctx.approval("go")
        return f"{text} ({len(ctx.session.history)} earlier)"

    add_notes(app)
    return app


def app_from_env() -> App:
    mode, _, at = os.environ.get(CRASH_ENV, "").partition(":")
    kill = mode if mode in ("before_send", "after_answer") else ""
    return make_app(llm_url(), kill, int(at or 0))


def add_notes(app: App) -> None:
    """``notes``: a turn that changes the session's items (add, pop or clear)."""

    @app.agent
    async def notes(ctx: Context, op: str) -> list[Any]:
        session = ctx.session
        if op == "clear":
            await session.clear()
        elif op == "pop":
            await session.pop_item()
        else:
            await session.add_items([{"turn": session.turn, "text": op}, {"extra": op}])
        return session.items
