"""The model calls of one run: journaled, governed before dispatch, retried on durable timers,
and routed across targets with fallback."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from wakeline import jsonutil
from wakeline.core import history
from wakeline.core.app import RetryPolicy
from wakeline.core.errors import ModelCallError
from wakeline.core.governance import reservation_for, run_policies
from wakeline.core.guards import (
    budget_breach,
    call_info,
    check_budget,
    check_policies,
    timer,
    wait_for_raise,
)
from wakeline.core.history import Conversations
from wakeline.core.model import Message, ModelCall, ModelProvider, ModelRequest
from wakeline.core.port import ContextPort
from wakeline.core.results import LLMResult, llm_result
from wakeline.core.routing import Route, Target
from wakeline.schemas.events import (
    BudgetExceeded,
    ModelCallCompleted,
    ModelCallDenied,
    ModelCallFailed,
    ModelCallInterrupted,
    ModelCallRequested,
    ModelRouteFallback,
)

Reservation = dict[str, Decimal | None]


@dataclass(frozen=True, slots=True)
class Fallback:
    """Why a routed call left a target: ``reason`` is "policy", "budget" or "failed"."""

    reason: str
    detail: str


class ModelCalls:
    """Sends a run's model calls; one per :class:`~wakeline.core.context.Context`."""

    def __init__(self, core: ContextPort, agent: str) -> None:
        self._core = core
        self._agent = agent
        self._conversations = Conversations()

    async def call(
        self,
        request: ModelRequest,
        provider: str,
        via: ModelProvider | None,
        policy: RetryPolicy,
    ) -> LLMResult:
        """One call to ``provider``: policies, then the budget, then attempts until it
        completes (a denial by a policy fails the run; a budget waits for a raise)."""
        request = self._forked(request, model=True, prompt=via is None)
        request_json = request.to_json()
        info = call_info(self._core, self._agent, "model", request.model, provider, request_json)
        await check_policies(self._core, info)
        requested, reservation, messages_text = self._prepared(provider, request, request_json)
        call = request if via is None else ModelCall(request, via)
        result = await self._dispatch(requested, call, reservation, policy, messages_text)
        assert isinstance(result, LLMResult)  # only a routed dispatch falls back
        return result

    async def routed(self, route: Route, request: ModelRequest) -> LLMResult:
        """The call sent to the first of ``route``'s targets that its policies allow, its
        budget covers and that answers; each target left is journaled with the reason."""
        policy = dataclasses.replace(self._core.app.retry, max_attempts=route.attempts)
        left: list[str] = []
        for target in route.targets:
            outcome = await self._try(route, target, request, policy)
            if isinstance(outcome, LLMResult):
                return outcome
            self._core.emit(
                ModelRouteFallback(
                    route.name, target.provider, target.model, outcome.reason, outcome.detail
                )
            )
            left.append(f"{target.provider}:{target.model} {outcome.reason} ({outcome.detail})")
        seq = self._core.next_seq - 1
        raise ModelCallError(f"route {route.name}", seq, "RouteExhausted", "; ".join(left))

    async def _try(
        self, route: Route, target: Target, request: ModelRequest, policy: RetryPolicy
    ) -> LLMResult | Fallback:
        core = self._core
        request = self._forked(dataclasses.replace(request, model=target.model), prompt=True)
        request_json = request.to_json()
        info = call_info(core, self._agent, "model", target.model, target.provider, request_json)
        denial = run_policies(list(core.app.policies.items()), info)
        if denial is not None:
            return Fallback("policy", f"{denial[0]}: {denial[1].reason}")
        requested, reservation, messages_text = self._prepared(
            target.provider, request, request_json
        )
        requested = dataclasses.replace(requested, route=route.name)
        call = ModelCall(request, None, target.timeout_s)
        return await self._dispatch(
            requested, call, reservation, policy, messages_text, routed=True
        )

    def _forked(
        self, request: ModelRequest, *, model: bool = False, prompt: bool = False
    ) -> ModelRequest:
        """A fork's overrides of a call from its fork point on (see wakeline.forking): its
        ``model`` (not a route's: its targets name theirs) and its system ``prompt`` (not a
        call ``via`` a framework's own model, which sends the framework's messages)."""
        fork = self._core.fork
        if fork is None or self._core.next_seq < fork.seq:
            return request
        if model and fork.model:
            request = dataclasses.replace(request, model=fork.model)
        if prompt and fork.prompt:
            request = dataclasses.replace(
                request, messages=with_system(request.messages, fork.prompt)
            )
        return request

    def _prepared(
        self, provider: str, request: ModelRequest, request_json: dict[str, Any]
    ) -> tuple[ModelCallRequested, Reservation, str]:
        """A call's request event (attempt 1), its worst-case reservation and its messages
        as JSON text (what the run's conversations are matched on)."""
        messages_text = jsonutil.dumps(request_json["messages"])
        text = history.with_messages(request_json, messages_text)  # the request, encoded once
        prices = self._core.app.prices
        reservation = reservation_for(prices, provider, request, request_bytes=len(text.encode()))
        requested = self._journaled(provider, request_json, messages_text, text, request.stream)
        return requested, reservation, messages_text

    def _journaled(
        self, provider: str, request: dict[str, Any], messages_text: str, text: str, stream: bool
    ) -> ModelCallRequested:
        """The call's event: the whole request's digest (of ``text``, its canonical JSON), and
        the request itself as the messages it appends to an earlier request of the run, if any
        (see core.history)."""
        requested = ModelCallRequested(
            provider, request["model"], jsonutil.digest(text), text, stream
        )
        base = self._conversations.base_of(messages_text)
        if base is None:
            return requested
        journaled = history.with_messages(request, history.after(messages_text, base))
        return dataclasses.replace(
            requested, request=journaled, base_seq=base.seq, base_reply=base.reply
        )

    async def _dispatch(
        self,
        requested: ModelCallRequested,
        call: ModelRequest | ModelCall,
        reservation: Reservation,
        policy: RetryPolicy,
        messages_text: str,
        *,
        routed: bool = False,
    ) -> LLMResult | Fallback:
        """Send a model call until it completes: every attempt is checked against the run's
        budget first, and an attempt a crash interrupted stays reserved (it may have been
        billed) until a later attempt of the call settles.  ``routed``: a budget that does
        not cover an attempt, or retriable failures that use up its attempts, return a
        :class:`Fallback` instead of waiting for a raise or raising."""
        core = self._core
        request = call if isinstance(call, ModelRequest) else call.request
        attempt, interrupted = 1, list[int]()
        while True:
            if routed and (breach := self._breach(request.model, reservation)) is not None:
                return Fallback("budget", breach)
            await check_budget(core, request.model, reservation)
            core.budget.reserve(core.next_seq, reservation, interrupted)
            event = core.emit(dataclasses.replace(requested, attempt=attempt), call)
            self._conversations.requested(event.seq, messages_text)
            result = await core.wait(event.seq)
            if isinstance(result, ModelCallCompleted):
                done = llm_result(result, event.seq)
                self._conversations.replied(done.seq, done.message)
                return done
            attempt += 1
            if isinstance(result, ModelCallInterrupted):
                interrupted.append(event.seq)
                continue
            if isinstance(result, ModelCallDenied):  # a shared budget said no
                exceeded = _shared_breach(request.model, result)
                if routed:
                    return Fallback("budget", _breach_text(exceeded))
                await wait_for_raise(core, exceeded)
                continue
            assert isinstance(result, ModelCallFailed)
            interrupted = []  # settled at their worst case with this attempt
            if result.retriable and routed and attempt > policy.max_attempts:
                return Fallback("failed", f"{result.error_type}: {result.message}")
            if not result.retriable or attempt > policy.max_attempts:
                raise ModelCallError("model call", event.seq, result.error_type, result.message)
            await timer(core, policy.backoff_s(attempt - 1), "retry")

    def _breach(self, target: str, reservation: Reservation) -> str | None:
        core = self._core
        exceeded = budget_breach(core, target, reservation, core.time_ms - core.started_ms)
        return None if exceeded is None else _breach_text(exceeded)


def with_system(messages: tuple[Message, ...], prompt: str) -> tuple[Message, ...]:
    """``messages`` with ``prompt`` as their one system message: where the first system
    message was (the others dropped), or first if there was none."""
    system: Message = {"role": "system", "content": prompt}
    out: list[Message] = []
    placed = False
    for message in messages:
        if message.get("role") != "system":
            out.append(message)
        elif not placed:
            out.append(system)
            placed = True
    return tuple(out) if placed else (system, *out)


def _shared_breach(target: str, denied: ModelCallDenied) -> BudgetExceeded:
    return BudgetExceeded(
        "model",
        target,
        denied.scope,
        denied.metric,
        denied.limit,
        denied.spent,
        denied.reservation,
    )


def _breach_text(exceeded: BudgetExceeded) -> str:
    return (
        f"{exceeded.scope} budget {exceeded.metric}: limit {exceeded.limit}, "
        f"spent {exceeded.spent}, call needs {exceeded.reservation}"
    )
