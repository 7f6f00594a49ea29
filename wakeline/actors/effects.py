"""Running effects: the only place where agents' model calls, tools and steps do I/O."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from wakeline import jsonutil
from wakeline.core.activation import Effect
from wakeline.core.app import App, ToolSpec
from wakeline.core.governance import reservation_for
from wakeline.core.governance import text as money_text
from wakeline.core.model import DeltaSink, ModelCall, ModelRequest, ProviderError
from wakeline.core.results import StepCall
from wakeline.core.tools import RetriableToolError, ToolCall, running_tool
from wakeline.ledger import Ledger
from wakeline.schemas.events import (
    GateOpened,
    GateResolved,
    ModelCallCompleted,
    ModelCallDenied,
    ModelCallFailed,
    ModelCallRequested,
    StepCompleted,
    StepFailed,
    StepRequested,
    TimerFired,
    TimerScheduled,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
)
from wakeline.topics.port import LogError


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class BudgetGate:
    """The shared budgets (ledger keys) a model call must reserve from before it is sent."""

    ledger: Ledger
    keys: tuple[tuple[str, str], ...]
    """``(scope, ledger key)`` pairs, e.g. ``("tenant", "tenant:acme")``."""


async def run_effect(
    app: App,
    effect: Effect,
    *,
    now_ms: Callable[[], int],
    on_delta: DeltaSink | None = None,
    budgets: BudgetGate | None = None,
) -> Any:
    """Run one effect and return the result payload to deliver to the run's core.  (Steps
    that wait for a person are never effects: the core lists them as ``waiting``.)"""
    payload = effect.request.payload
    if isinstance(payload, ModelCallRequested):
        if budgets is None or not budgets.keys:
            return await _model_call(app, effect, payload, on_delta)
        return await _budgeted_model_call(app, effect, payload, on_delta, budgets)
    if isinstance(payload, ToolCallRequested):
        return await _tool_call(app, effect, payload)
    if isinstance(payload, StepRequested):
        return await _step(effect)
    if isinstance(payload, TimerScheduled):
        await _sleep_until(payload.fire_at_ms, now_ms)
        return TimerFired(effect.seq)
    if isinstance(payload, GateOpened) and payload.timeout_ms is not None:
        await _sleep_until(effect.request.time_ms + payload.timeout_ms, now_ms)
        return GateResolved(effect.seq, False, "timeout", "no decision before the timeout", True)
    raise TypeError(f"not an effect: {type(payload).__name__}")


async def _sleep_until(when_ms: int, now_ms: Callable[[], int]) -> None:
    delay = (when_ms - now_ms()) / 1000
    if delay > 0:
        await asyncio.sleep(delay)


async def _model_call(
    app: App, effect: Effect, payload: ModelCallRequested, on_delta: DeltaSink | None
) -> ModelCallCompleted | ModelCallFailed:
    request = _request_of(effect, payload)
    call = effect.call if isinstance(effect.call, ModelCall) else ModelCall(request)
    provider = call.provider or app.providers.get(payload.provider)
    if provider is None:
        known = ", ".join(sorted(app.providers)) or "none"
        message = f"no provider {payload.provider!r} is configured (known: {known})"
        return ModelCallFailed(effect.seq, "UnknownProvider", message, False)
    started = time.perf_counter()
    try:
        sent = provider.complete(request, on_delta=on_delta)
        limited = sent if call.timeout_s is None else asyncio.wait_for(sent, call.timeout_s)
        response = await limited
    except TimeoutError as exc:  # the target's time limit (or the provider's own)
        latency = int((time.perf_counter() - started) * 1e6)
        limit = call.timeout_s
        message = _error_text(exc) if limit is None else f"no answer within {limit} s"
        return ModelCallFailed(effect.seq, "Timeout", message, True, None, latency)
    except ProviderError as exc:
        latency = int((time.perf_counter() - started) * 1e6)
        return ModelCallFailed(
            effect.seq,
            type(exc).__name__,
            _error_text(exc),
            exc.retriable,
            exc.status_code,
            latency,
        )
    except Exception as exc:  # an adapter bug or an unexpected transport error
        latency = int((time.perf_counter() - started) * 1e6)
        return ModelCallFailed(
            effect.seq, type(exc).__name__, _error_text(exc), True, None, latency
        )
    latency = int((time.perf_counter() - started) * 1e6)
    return ModelCallCompleted(
        step=effect.seq,
        provider=payload.provider,
        model=payload.model,
        response_id=response.response_id,
        response_model=response.response_model or payload.model,
        finish_reason=response.finish_reason,
        message=jsonutil.dumps(response.message()),
        usage=response.usage,
        latency_us=latency,
        cost_usd=app.prices.cost(payload.provider, payload.model, response.usage),
    )


async def _budgeted_model_call(
    app: App,
    effect: Effect,
    payload: ModelCallRequested,
    on_delta: DeltaSink | None,
    gate: BudgetGate,
) -> ModelCallCompleted | ModelCallFailed | ModelCallDenied:
    """Reserve the call's worst case in each shared budget, call, settle what it cost.

    Each attempt has its own request id (``run:seq``).  The reservations of the attempts a
    crash interrupted (``effect.interrupted``) stay in force while this one is reserved, and
    once it has been sent they are settled at their worst case: they may have been billed.
    """
    request = _request_of(effect, payload)
    run_id = effect.request.run_id
    request_id = f"{run_id}:{effect.seq}"
    worst = reservation_for(app.prices, payload.provider, request)["usd"]
    earlier = [f"{run_id}:{seq}" for seq in effect.interrupted]
    granted: list[str] = []
    try:
        for scope, key in gate.keys:
            decision = await gate.ledger.reserve(key, request_id, run_id, worst)
            if not decision.granted:
                await _release(gate.ledger, granted, request_id, Decimal(0))
                return ModelCallDenied(
                    effect.seq,
                    scope,
                    "usd",
                    money_text(decision.limit),
                    str(decision.committed),
                    money_text(decision.amount),
                )
            granted.append(key)
    except LogError as exc:
        with contextlib.suppress(LogError):  # else they stay reserved: never under-counted
            await _release(gate.ledger, granted, request_id, Decimal(0))
            await _settle_interrupted(gate, earlier, worst)
        return ModelCallFailed(effect.seq, "LedgerUnavailable", _error_text(exc), True)
    result = await _model_call(app, effect, payload, on_delta)
    cost = result.cost_usd if isinstance(result, ModelCallCompleted) else None
    await _release(gate.ledger, granted, request_id, cost or Decimal(0))
    await _settle_interrupted(gate, earlier, worst)
    return result


async def _release(ledger: Ledger, keys: list[str], request_id: str, cost: Decimal) -> None:
    for key in keys:
        await ledger.settle(key, request_id, cost)


async def _settle_interrupted(
    gate: BudgetGate, request_ids: list[str], worst: Decimal | None
) -> None:
    """Count each interrupted attempt as spent at its worst case, in every shared budget (a
    ``Settle`` of a reservation that is not in force, e.g. one its worker settled before it
    died, changes nothing)."""
    for request_id in request_ids:
        await _release(gate.ledger, [key for _, key in gate.keys], request_id, worst or Decimal(0))


def _request_of(effect: Effect, payload: ModelCallRequested) -> ModelRequest:
    call = effect.call
    if isinstance(call, ModelRequest):
        return call
    return call.request if isinstance(call, ModelCall) else _request_from(payload)


def _request_from(payload: ModelCallRequested) -> ModelRequest:
    """A request from its event alone (the core passes its call object; this is for effects
    built from a journal by hand): only a request journaled whole can be."""
    if payload.base_seq >= 0:
        raise ValueError(
            f"the request extends the one at seq {payload.base_seq}: pass the call "
            "(wakeline.core.history.expand_requests reads a journal's whole requests)"
        )
    data = jsonutil.loads(payload.request)
    return ModelRequest(
        model=data["model"],
        messages=tuple(data["messages"]),
        max_tokens=data.get("max_tokens"),
        temperature=data.get("temperature"),
        tools=tuple(data.get("tools", ())),
        params=data.get("params", {}),
        stream=payload.stream,
    )


async def _tool_call(
    app: App, effect: Effect, payload: ToolCallRequested
) -> ToolCallCompleted | ToolCallFailed:
    spec = effect.call if isinstance(effect.call, ToolSpec) else app.tools.get(payload.tool)
    if spec is None:
        return ToolCallFailed(effect.seq, "UnknownTool", f"no tool {payload.tool!r}", False)
    call = ToolCall(effect.request.run_id, effect.seq, payload.idempotency_key)
    args = jsonutil.loads(payload.args)
    started = time.perf_counter()
    try:
        with running_tool(call):
            result = await _call(spec.fn, (), args)
        text = jsonutil.dumps(result)
    except RetriableToolError as exc:
        return ToolCallFailed(effect.seq, type(exc).__name__, _error_text(exc), True)
    except Exception as exc:
        return ToolCallFailed(effect.seq, type(exc).__name__, _error_text(exc), False)
    latency = int((time.perf_counter() - started) * 1e6)
    return ToolCallCompleted(effect.seq, text, latency)


async def _step(effect: Effect) -> StepCompleted | StepFailed:
    call = effect.call
    if not isinstance(call, StepCall):
        return StepFailed(effect.seq, "StepUnavailable", "the step function is not known")
    try:
        result = await _call(call.fn, call.args, dict(call.kwargs))
        return StepCompleted(effect.seq, jsonutil.dumps(result))
    except Exception as exc:
        return StepFailed(effect.seq, type(exc).__name__, _error_text(exc))


async def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    result = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result
