"""A small research agent: parallel model calls, a tool, recorded time, a durable sleep.

Runs on the embedded log with the deterministic mock model -- no services, no API key:

    wakeline run examples/research_agent.py:research --input '{"topic": "sea otters"}'

To use a real model instead, register a provider, e.g.::

    from wakeline.providers import OpenAICompatProvider
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    app.provider("openai", OpenAICompatProvider())          # reads OPENAI_API_KEY
    # any OpenAI-compatible server (vLLM, Ollama, llama.cpp):
    app.provider("local", OpenAICompatProvider(base_url="http://127.0.0.1:8000/v1", name="local"))
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from wakeline import App, Context
from wakeline.providers import MockModel

app = App(default_provider="mock", default_model="mock-1")
app.provider("mock", MockModel())


class Question(BaseModel):
    topic: str
    angles: int = 3


class Report(BaseModel):
    topic: str
    notes: list[str]
    summary: str
    written_at: str
    report_id: str


@app.tool
def encyclopedia(term: str) -> dict[str, str]:
    """An idempotent lookup: safe to run again after a crash."""
    return {"term": term, "entry": f"{term}: an entry from the offline encyclopedia"}


@app.agent
async def research(ctx: Context, q: Question) -> Report:
    # parallel model calls get deterministic sequence numbers
    notes = await asyncio.gather(
        *(
            ctx.llm(f"Give one fact about {q.topic}, angle {i + 1}", max_tokens=100)
            for i in range(q.angles)
        )
    )
    entry = await ctx.tool(encyclopedia, term=q.topic)
    await ctx.sleep(0.05)  # a durable timer
    summary = await ctx.llm(
        [
            {"role": "system", "content": "You write short summaries."},
            {"role": "user", "content": f"Summarise: {entry['entry']}"},
        ],
        max_tokens=200,
    )
    return Report(
        topic=q.topic,
        notes=[n.text for n in notes],
        summary=summary.text,
        written_at=ctx.now().isoformat(),
        report_id=str(ctx.uuid()),
    )
