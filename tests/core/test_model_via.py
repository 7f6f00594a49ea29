"""``ctx.llm(..., via=provider)``: a call sent through a provider of its own (how a framework
adapter journals the framework's model) is journaled, priced and replayed as any call of
``provider.name``; the framework's own encoding of the response comes back on replay."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from wakeline import App, Context, jsonutil
from wakeline.actors.effects import run_effect
from wakeline.core.model import DeltaSink, ModelRequest, ModelResponse
from wakeline.core.pricing import ModelPrice, PriceTable
from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import ModelCallCompleted, ModelCallRequested, RunCompleted, RunStarted
from wakeline.schemas.usage import Usage
from wakeline.testing import CoreDriver


class FrameworkModel:
    """A provider an adapter builds around a framework's model: it counts its calls."""

    name = "openai"

    def __init__(self) -> None:
        self.calls: list[ModelRequest] = []

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> ModelResponse:
        self.calls.append(request)
        native = {"parts": [{"kind": "text", "content": f"answer {len(self.calls)}"}]}
        return ModelResponse(
            f"answer {len(self.calls)}", Usage(100, 10), "resp-1", "gpt-x", "stop", (), native
        )


def make_app(model: FrameworkModel) -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.prices = PriceTable({"gpt-x": ModelPrice(Decimal("1"), Decimal("2"))})

    @app.agent
    async def framed(ctx: Context, question: str) -> Any:
        out = []
        for turn in range(2):
            result = await ctx.llm(f"{question} {turn}", model="gpt-x", via=model)
            out.append(result.message["framework"])
        return out

    return app


async def test_a_call_via_a_provider_of_its_own_is_journaled_priced_and_replayed() -> None:
    model = FrameworkModel()
    core = CoreDriver("via-1", make_app(model))
    out = core.start(RunStarted("framed", jsonutil.dumps("q")))
    pending = list(out.effects)
    while pending:
        out = core.deliver(await run_effect(core.app, pending.pop(0), now_ms=lambda: 0))
        pending += out.effects
    terminal = core.terminal.payload if core.terminal else None
    assert isinstance(terminal, RunCompleted)
    assert jsonutil.loads(terminal.output) == [
        {"parts": [{"kind": "text", "content": "answer 1"}]},
        {"parts": [{"kind": "text", "content": "answer 2"}]},
    ]
    assert [r.messages[0]["content"] for r in model.calls] == ["q 0", "q 1"]
    requested = [e.payload for e in core.journal if isinstance(e.payload, ModelCallRequested)]
    assert [(r.provider, r.model) for r in requested] == [("openai", "gpt-x")] * 2
    done = [e.payload for e in core.journal if isinstance(e.payload, ModelCallCompleted)]
    assert [c.cost_usd for c in done] == [Decimal("0.00012")] * 2  # 100 in at $1, 10 out at $2
    # replay with no provider at all: the framework's encoding comes back from the journal
    raw = [event_codec().encode(e) for e in core.journal]
    report = replay_journal(make_app(FrameworkModel()), "via-1", raw)
    assert report.identical
    assert len(model.calls) == 2
