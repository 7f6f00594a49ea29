"""Governed model routing: ``app.route(name, targets)`` and ``ctx.llm(..., route=name)``.

Each target is checked against the policies and the run budget before it is sent (a denied
target is never called); retriable failures and timeouts move the call to the next target;
the journal records every attempt (with the route's name) and every fallback with its
reason; a replay with no provider, or a fresh core after a crash, follows the recorded
choice and sends nothing already answered.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from wakeline import App, Context, RouteError, Target, jsonutil
from wakeline.actors.effects import run_effect
from wakeline.core.governance import CallInfo, Deny
from wakeline.core.model import (
    DeltaSink,
    ModelRequest,
    ModelResponse,
    RetriableProviderError,
    TerminalProviderError,
)
from wakeline.core.pricing import ModelPrice, PriceTable
from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    Budget,
    ModelCallDenied,
    ModelCallRequested,
    ModelRouteFallback,
    RunCompleted,
    RunFailed,
    RunStarted,
)
from wakeline.schemas.usage import Usage
from wakeline.testing import CoreDriver


class Provider:
    """Answers, fails (retriable or terminal) or never answers; counts what it was sent."""

    def __init__(self, name: str, *, fail: int = 0, terminal: bool = False, hang: bool = False):
        self.name, self.fail, self.terminal, self.hang = name, fail, terminal, hang
        self.sent: list[str] = []

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> ModelResponse:
        self.sent.append(request.model)
        if self.hang:
            await asyncio.Event().wait()
        if self.terminal:
            raise TerminalProviderError("bad request", status_code=400)
        if len(self.sent) <= self.fail:
            raise RetriableProviderError("overloaded", status_code=529)
        return ModelResponse(f"{self.name} says hi", Usage(1000, 100), response_model=request.model)


def make_app(*providers: Provider, targets: list[str | Target], **route: Any) -> App:
    app = App(default_provider="none", default_model="none")
    app.prices = PriceTable(
        {
            "big": ModelPrice(Decimal("10"), Decimal("30")),
            "small": ModelPrice(Decimal("0.1"), Decimal("0.2")),
        }
    )
    for provider in providers:
        app.provider(provider.name, provider)
    app.route("smart", targets, **route)

    @app.agent
    async def ask(ctx: Context, question: str) -> dict[str, str]:
        result = await ctx.llm(question, route="smart", max_tokens=100)
        return {"text": result.text, "provider": result.provider, "model": result.model}

    return app


async def run(app: App, budget: Budget | None = None) -> CoreDriver:
    core = CoreDriver("route-1", app, always_replay=True)
    await core.drive(core.start(RunStarted("ask", jsonutil.dumps("hello"), budget=budget)))
    return core


def of(core: CoreDriver, kind: type) -> list[Any]:
    return [e.payload for e in core.journal if isinstance(e.payload, kind)]


def output(core: CoreDriver) -> Any:
    terminal = core.terminal.payload if core.terminal else None
    assert isinstance(terminal, RunCompleted), terminal
    return jsonutil.loads(terminal.output)


def replays_identically(core: CoreDriver, app: App) -> bool:
    raw = [event_codec().encode(e) for e in core.journal]
    return replay_journal(app.with_providers({}), core.run_id, raw).identical


async def test_retriable_failures_fall_back_to_the_next_target_and_replay_follows() -> None:
    a, b = Provider("a", fail=99), Provider("b")
    app = make_app(a, b, targets=["a:big", "b:small"], attempts=2)
    core = await run(app)
    assert output(core) == {"text": "b says hi", "provider": "b", "model": "small"}
    assert a.sent == ["big", "big"] and b.sent == ["small"]  # two attempts, then the next
    requested = of(core, ModelCallRequested)
    assert [(r.provider, r.model, r.attempt, r.route) for r in requested] == [
        ("a", "big", 1, "smart"),
        ("a", "big", 2, "smart"),
        ("b", "small", 1, "smart"),
    ]
    [fallback] = of(core, ModelRouteFallback)
    assert (fallback.provider, fallback.reason) == ("a", "failed")
    assert "overloaded" in fallback.detail
    assert replays_identically(core, app)
    assert (a.sent, b.sent) == (["big", "big"], ["small"])  # replay sent nothing


async def test_a_target_a_policy_denies_is_never_called() -> None:
    a, b = Provider("a"), Provider("b")
    app = make_app(a, b, targets=["a:big", "b:small"])

    @app.policy
    def no_big_models(call: CallInfo) -> Deny | None:
        return Deny("big models need a ticket") if call.target == "big" else None

    core = await run(app)
    assert output(core)["provider"] == "b"
    assert a.sent == [] and b.sent == ["small"]
    [fallback] = of(core, ModelRouteFallback)
    assert (fallback.reason, fallback.detail) == (
        "policy",
        "no_big_models: big models need a ticket",
    )
    assert [r.provider for r in of(core, ModelCallRequested)] == ["b"]


async def test_a_target_the_run_budget_cannot_cover_is_never_called() -> None:
    a, b = Provider("a"), Provider("b")
    app = make_app(a, b, targets=["a:big", "b:small"])
    core = await run(app, Budget(usd="0.001"))  # big reserves 100 out x $30/M = $0.003
    assert output(core)["model"] == "small"
    assert a.sent == []
    [fallback] = of(core, ModelRouteFallback)
    assert fallback.reason == "budget" and "usd" in fallback.detail


async def test_a_shared_budget_denial_falls_back() -> None:
    a, b = Provider("a"), Provider("b")
    app = make_app(a, b, targets=["a:big", "b:small"])
    core = CoreDriver("route-1", app, always_replay=True)
    first = core.start(RunStarted("ask", jsonutil.dumps("hello")))
    [effect] = first.effects
    denied = ModelCallDenied(effect.seq, "tenant", "usd", "1", "1", "0.02")
    await core.drive(core.deliver(denied))  # as the driver's ledger check would deliver it
    assert output(core)["provider"] == "b" and a.sent == []
    [fallback] = of(core, ModelRouteFallback)
    assert fallback.reason == "budget" and fallback.detail.startswith("tenant budget usd")


async def test_a_target_that_times_out_falls_back() -> None:
    a, b = Provider("a", hang=True), Provider("b")
    app = make_app(a, b, targets=[Target("a", "big", timeout_s=0.05), "b:small"])
    core = await run(app)
    assert output(core)["provider"] == "b"
    [fallback] = of(core, ModelRouteFallback)
    assert fallback.detail == "Timeout: no answer within 0.05 s"


async def test_a_terminal_error_is_not_routed_around() -> None:
    a, b = Provider("a", terminal=True), Provider("b")
    core = await run(make_app(a, b, targets=["a:big", "b:small"]))
    terminal = core.terminal.payload if core.terminal else None
    assert isinstance(terminal, RunFailed) and "bad request" in terminal.message
    assert b.sent == []


async def test_an_exhausted_route_fails_the_call_with_every_reason() -> None:
    a, b = Provider("a", fail=99), Provider("b", fail=99)
    core = await run(make_app(a, b, targets=["a:big", "b:small"]))
    terminal = core.terminal.payload if core.terminal else None
    assert isinstance(terminal, RunFailed) and "RouteExhausted" in terminal.message
    assert "a:big failed" in terminal.message and "b:small failed" in terminal.message
    assert len(of(core, ModelRouteFallback)) == 2


async def test_a_crash_after_a_fallback_resumes_at_the_next_target() -> None:
    a, b = Provider("a", fail=99), Provider("b")
    app = make_app(a, b, targets=["a:big", "b:small"])
    core = CoreDriver("route-1", app)
    first = core.start(RunStarted("ask", jsonutil.dumps("hello")))
    result = await run_effect(app, first.effects[0], now_ms=lambda: 0)
    second = core.deliver(result)  # a failed: the fallback and b's request are journaled
    assert [e.request.payload.provider for e in second.effects] == ["b"]
    fresh = core.crash()
    await fresh.drive(fresh.recover())
    assert output(fresh)["provider"] == "b"
    assert a.sent == ["big"] and b.sent == ["small"]


def test_routes_are_declared_once_with_valid_targets() -> None:
    app = App()
    app.route("r", ["openai:gpt-4o", "ollama:llama3:8b"], timeout_s=5)
    assert app.routes["r"].targets[1] == Target("ollama", "llama3:8b", 5)
    with pytest.raises(RouteError, match="declared twice"):
        app.route("r", ["openai:gpt-4o"])
    with pytest.raises(RouteError, match="not 'provider:model'"):
        app.route("s", ["gpt-4o"])
    with pytest.raises(RouteError, match="no targets"):
        app.route("t", [])


async def test_an_unknown_route_fails_the_run_with_its_name() -> None:
    app = App()

    @app.agent
    async def lost(ctx: Context, question: str) -> str:
        return (await ctx.llm(question, route="nowhere")).text

    core = CoreDriver("route-2", app)
    core.start(RunStarted("lost", jsonutil.dumps("hi")))
    terminal = core.terminal.payload if core.terminal else None
    assert isinstance(terminal, RunFailed) and "route 'nowhere' is not declared" in terminal.message
