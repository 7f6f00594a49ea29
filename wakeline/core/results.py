"""What ``ctx`` calls return to agent code, and what a ``ctx.step`` hands the driver."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from wakeline import jsonutil
from wakeline.schemas.events import ModelCallCompleted
from wakeline.schemas.usage import Usage


@dataclass(frozen=True, slots=True)
class LLMResult:
    """A completed model call, as journaled."""

    text: str
    message: dict[str, Any]
    usage: Usage
    cost_usd: Decimal | None
    model: str
    provider: str
    response_id: str
    finish_reason: str
    seq: int

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = self.message.get("tool_calls", [])
        return calls


@dataclass(frozen=True, slots=True)
class Approval:
    """The decision on an approval gate."""

    approved: bool
    by: str
    reason: str
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class StepCall:
    """A ``ctx.step`` function with its arguments, run by the driver."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


def llm_result(result: ModelCallCompleted, seq: int) -> LLMResult:
    message = jsonutil.loads(result.message)
    return LLMResult(
        text=str(message.get("content") or ""),
        message=message,
        usage=result.usage,
        cost_usd=result.cost_usd,
        model=result.response_model or result.model,
        provider=result.provider,
        response_id=result.response_id,
        finish_reason=result.finish_reason,
        seq=seq,
    )
