"""The OpenTelemetry GenAI description of effects and their results.

:func:`span_of` names the span of an effect that really runs (``chat {model}``,
``execute_tool {tool}``, ``step {name}``) and gives its attributes; :func:`span_result` adds
what the effect's result says (usage, response, errors).  Pure functions of the events: the
driver never sees these names; :class:`wakeline.telemetry.runtime.Telemetry` calls them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wakeline import jsonutil
from wakeline.core.model import ModelCall, ModelRequest
from wakeline.core.steps import kind_of
from wakeline.schemas.events import (
    ModelCallCompleted,
    ModelCallDenied,
    ModelCallFailed,
    ModelCallRequested,
    StepFailed,
    StepRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
)

if TYPE_CHECKING:
    from wakeline.core.activation import Effect

__all__ = ["span_of", "span_result"]


def _request_of(effect: Effect, payload: ModelCallRequested) -> dict[str, Any]:
    """What the span shows of the request (``max_tokens``, ``temperature``, ``messages``),
    from the core's call object: a journaled request may hold only the messages it appends
    to an earlier one (``core/history.py``)."""
    call = effect.call
    if isinstance(call, ModelCall):
        call = call.request
    if isinstance(call, ModelRequest):  # read in place: no copy of a long history per call
        return {
            "max_tokens": call.max_tokens,
            "temperature": call.temperature,
            "messages": call.messages,
        }
    request = jsonutil.loads(payload.request)
    return request if isinstance(request, dict) and payload.base_seq < 0 else {}


def span_of(effect: Effect, capture: bool) -> tuple[str, str, dict[str, Any]] | None:
    """``(kind, span name, attributes)`` of an effect that gets a span when it runs; the kind
    is the step kind's name (``core/steps.py``)."""
    payload = effect.request.payload
    kind = kind_of(payload)
    if kind is None:
        return None
    attributes: dict[str, Any] = {
        "wakeline.run.id": effect.request.run_id,
        "wakeline.seq": effect.seq,
    }
    if isinstance(payload, ModelCallRequested):
        attributes |= {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": payload.provider,
            "gen_ai.request.model": payload.model,
            "wakeline.attempt": payload.attempt,
            "wakeline.stream": payload.stream,
        }
        request = _request_of(effect, payload)
        for key in ("max_tokens", "temperature"):
            if request.get(key) is not None:
                attributes[f"gen_ai.request.{key}"] = request[key]
        if capture:
            attributes["gen_ai.input.messages"] = jsonutil.dumps(request.get("messages", []))
        return kind.name, f"chat {payload.model}", attributes
    if isinstance(payload, ToolCallRequested):
        attributes |= {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": payload.tool,
            "gen_ai.tool.type": "function",
            "wakeline.tool.idempotency_key": payload.idempotency_key,
        }
        if capture:
            attributes["gen_ai.tool.call.arguments"] = payload.args
        return kind.name, f"execute_tool {payload.tool}", attributes
    if isinstance(payload, StepRequested):
        name = f"step {payload.name}"
        return kind.name, name, attributes | {"wakeline.step.name": payload.name}
    return None


def span_result(result: object, capture: bool) -> tuple[str, dict[str, Any], str | None]:
    """``(outcome, attributes, error message or None)`` of an effect's result."""
    if isinstance(result, ModelCallCompleted):
        usage = result.usage
        attributes: dict[str, Any] = {
            "gen_ai.response.model": result.response_model,
            "gen_ai.response.id": result.response_id,
            "gen_ai.response.finish_reasons": [result.finish_reason],
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": usage.cached_input_tokens,
            "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
            "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
            "wakeline.latency_us": result.latency_us,
        }
        if result.cost_usd is not None:
            attributes["wakeline.cost_usd"] = float(result.cost_usd)
        if capture:
            attributes["gen_ai.output.messages"] = result.message
        return "ok", attributes, None
    if isinstance(result, ToolCallCompleted):
        return "ok", {"gen_ai.tool.call.result": result.result} if capture else {}, None
    if isinstance(result, ModelCallDenied):
        denied = {"error.type": "budget_denied", "wakeline.denied.scope": result.scope}
        return "denied", denied, f"{result.scope} budget exceeded"
    if isinstance(result, ModelCallFailed | ToolCallFailed | StepFailed):
        failed: dict[str, Any] = {"error.type": result.error_type}
        if isinstance(result, ModelCallFailed) and result.status_code is not None:
            failed["http.response.status_code"] = result.status_code
        return "error", failed, result.message
    return "ok", {}, None
