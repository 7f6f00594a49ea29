"""Governance inside the deterministic core: policies and run budgets, checked before dispatch.

Both run in the core, before a call's request event is produced, so a denied call never
reaches its provider or tool, and a replay reaches the same decisions from the same journal.
Policies must therefore be deterministic functions of the call they are shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from wakeline import jsonutil
from wakeline.core.model import ModelRequest
from wakeline.core.pricing import PriceTable
from wakeline.schemas.budgets import METRICS as METRICS
from wakeline.schemas.events import Budget, ModelCallCompleted, ModelCallDenied

DEFAULT_MAX_OUTPUT_TOKENS = 4096
"""Reserved output tokens for a model call that sets no ``max_tokens``."""


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What a policy is shown about a call before it is sent."""

    kind: Literal["model", "tool"]
    run_id: str
    agent: str
    tenant: str
    target: str
    """The model (model calls) or the tool name (tool calls)."""
    provider: str
    request: Mapping[str, Any]
    """The model request as JSON, or the tool's arguments."""


@dataclass(frozen=True, slots=True)
class Deny:
    """A policy's refusal.  ``suspend=True`` makes the run wait for a human decision
    (approve = send the call anyway, reject = fail the run); otherwise the run fails."""

    reason: str
    suspend: bool = False


Policy = Callable[[CallInfo], Deny | None]


@dataclass(frozen=True, slots=True)
class Exceeded:
    metric: str
    limit: Decimal
    spent: Decimal
    reservation: Decimal | None


def reservation_for(
    prices: PriceTable, provider: str, request: ModelRequest, *, request_bytes: int | None = None
) -> dict[str, Decimal | None]:
    """The worst case of one model call: all input uncached, the whole output allowance.

    Input tokens are bounded by the UTF-8 byte length of the canonical request (a token is at
    least one byte) plus a few tokens per message of chat formatting, so the reservation is an
    upper bound of what the call can cost, not an estimate.  ``request_bytes``: that length,
    when the caller has the canonical text already (``jsonutil.dumps(request.to_json())``).
    """
    if request_bytes is None:
        request_bytes = len(jsonutil.dumps(request.to_json()).encode())
    input_tokens = request_bytes + 4 * len(request.messages)
    output_tokens = request.max_tokens or DEFAULT_MAX_OUTPUT_TOKENS
    usd = prices.max_cost(provider, request.model, input_tokens, output_tokens)
    return {
        "usd": usd,
        "tokens": Decimal(input_tokens + output_tokens),
        "model_calls": Decimal(1),
    }


class RunLedger:
    """A run's budget: limits, spend settled from results, and reservations in flight.

    An attempt interrupted by a crash (``ModelCallInterrupted``) may have been billed, so its
    reservation is never released: it stays in flight while the call is sent again and, once a
    later attempt of the same call settles, counts as spent at its worst case (one model call,
    its reserved tokens and dollars).  The provider can therefore bill a run at most its limits.
    """

    def __init__(self, budget: Budget | None) -> None:
        self.limits: dict[str, Decimal] = {}
        if budget is not None:
            for metric in METRICS:
                value = getattr(budget, metric)
                if value is not None:
                    self.limits[metric] = Decimal(str(value))
        self.spent = {metric: Decimal(0) for metric in METRICS[:3]}
        self._reserved: dict[int, dict[str, Decimal | None]] = {}
        self._carried: dict[int, tuple[int, ...]] = {}

    def check(self, reservation: Mapping[str, Decimal | None], elapsed_ms: int) -> Exceeded | None:
        """The first limit that ``reservation`` (plus the calls in flight) would break."""
        for metric in METRICS[:3]:
            limit = self.limits.get(metric)
            if limit is None:
                continue
            wanted = reservation.get(metric)
            in_flight = sum(
                (r.get(metric) or Decimal(0) for r in self._reserved.values()), Decimal(0)
            )
            if wanted is None or self.spent[metric] + in_flight + wanted > limit:
                return Exceeded(metric, limit, self.spent[metric] + in_flight, wanted)
        wall = self.limits.get("wall_time_ms")
        if wall is not None and elapsed_ms >= wall:
            return Exceeded("wall_time_ms", wall, Decimal(elapsed_ms), Decimal(0))
        return None

    def reserve(
        self, seq: int, reservation: Mapping[str, Decimal | None], interrupted: Sequence[int] = ()
    ) -> None:
        """Reserve the call at ``seq``; ``interrupted``: the seqs of earlier attempts of the same
        call that a crash interrupted (they stay reserved until this attempt settles)."""
        self._reserved[seq] = dict(reservation)
        if interrupted:
            self._carried[seq] = tuple(interrupted)

    def interrupted_before(self, seq: int) -> tuple[int, ...]:
        """The interrupted attempts the call at ``seq`` sends again."""
        return self._carried.get(seq, ())

    def settle(self, step: int, result: object) -> None:
        """Release the reservation of ``step``; count what the call really used, and the worst
        case of each interrupted attempt it was sent again for."""
        carried = self._carried.pop(step, ())
        if self._reserved.pop(step, None) is None or isinstance(result, ModelCallDenied):
            return  # a denied attempt was not sent: the interrupted ones stay reserved
        self.spent["model_calls"] += 1
        if isinstance(result, ModelCallCompleted):
            self.spent["tokens"] += result.usage.input_tokens + result.usage.output_tokens
            self.spent["usd"] += result.cost_usd or Decimal(0)
        for seq in carried:
            worst = self._reserved.pop(seq, None)
            if worst is not None:
                for metric in METRICS[:3]:
                    self.spent[metric] += worst.get(metric) or Decimal(0)

    def raise_limit(self, metric: str, limit: str) -> None:
        self.limits[metric] = Decimal(limit)


def run_policies(policies: Sequence[tuple[str, Policy]], info: CallInfo) -> tuple[str, Deny] | None:
    """The first policy that denies the call, with its decision."""
    for name, policy in policies:
        try:
            decision = policy(info)
        except Exception as exc:  # a broken policy denies: fail closed
            decision = Deny(f"policy raised {type(exc).__name__}: {exc}")
        if decision is not None:
            return name, decision
    return None


def text(value: Decimal | None) -> str:
    return "unpriced" if value is None else str(value)
