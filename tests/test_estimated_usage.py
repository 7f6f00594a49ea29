"""A streamed call whose provider sends no usage (llama.cpp's server does not) is journaled with
usage wakeline estimated (an offline tokenizer), marked estimated, priced, counted by a tenant
budget, and shown as estimated by the views and the CLI."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from wakeline import App, Client
from wakeline.cli.main import main
from wakeline.ledger import Ledger
from wakeline.providers import ModelPrice, OpenAICompatProvider, PriceTable
from wakeline.providers.estimate import count_tokens
from wakeline.schemas.events import ModelCallCompleted
from wakeline.testing import local_runtime
from wakeline.testing.fake_llm import FakeLLMServer

PRICE = ModelPrice(input_per_mtok=Decimal(1_000_000), output_per_mtok=Decimal(2_000_000))
"""$1 per input token, $2 per output token: the cost shows which counts were used."""


def make_app(base_url: str) -> App:
    app = App(
        default_provider="llamacpp",
        default_model="qwen-local",
        prices=PriceTable({"qwen-local": PRICE}),
    )
    app.provider("llamacpp", OpenAICompatProvider(base_url=base_url, name="llamacpp"))

    @app.agent
    async def chat(ctx: Any, question: str) -> str:
        return str((await ctx.llm(question, stream=True, max_tokens=50)).text)

    return app


async def test_a_stream_without_usage_is_estimated_priced_and_budgeted(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        server.stream_usage = False
        async with local_runtime(make_app(server.openai_base_url), tmp_path) as rt:
            ledger = Ledger(rt.log, rt.topics.ledger, writer="test")
            await ledger.set_limit("tenant:acme", Decimal(1000), "test")
            handle = await rt.client.start_run("chat", "how tall is a kelp forest?", tenant="acme")
            reply = await asyncio.wait_for(rt.client.result(handle.run_id), 30)
            [done] = [
                e.payload
                async for e in rt.client.events(handle.run_id)
                if isinstance(e.payload, ModelCallCompleted)
            ]
            state = await ledger.state("tenant:acme")
            async with Client(rt.log, views_dir=tmp_path / "views") as reader:
                row = await reader.get(handle.run_id)
                [step] = await reader.steps(handle.run_id)
    assert [r.stream for r in server.requests()] == [True]
    usage = done.usage
    assert usage.estimated and usage.output_tokens == count_tokens(reply) > 0
    assert usage.input_tokens >= count_tokens("how tall is a kelp forest?")
    assert done.cost_usd == usage.input_tokens + 2 * usage.output_tokens  # priced from them
    assert state.spent == done.cost_usd and not state.active  # the budget counted them

    assert row is not None and row.estimated_calls == 1  # the views (and so the API) say so
    assert step.usage_estimated and step.usage is not None
    assert (step.usage.input, step.usage.output) == (usage.input_tokens, usage.output_tokens)

    cli = CliRunner(env={"COLUMNS": "200"})
    show = await asyncio.to_thread(
        cli.invoke, main, ["--data", str(tmp_path), "show", handle.run_id]
    )
    assert show.exit_code == 0, show.output
    assert f"~{usage.input_tokens}/{usage.output_tokens}" in show.output
    assert "(estimated for 1 call)" in show.output
