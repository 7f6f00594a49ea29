"""``Context``: what agent code calls.  Every call is journaled through the run's core."""

from __future__ import annotations

import dataclasses
import uuid as uuidlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from wakeline import jsonutil
from wakeline.core import history
from wakeline.core.app import AgentSpec, RetryPolicy, ToolSpec
from wakeline.core.errors import ModelCallError, StepFailedError, ToolCallError, WakelineError
from wakeline.core.governance import CallInfo, reservation_for, run_policies
from wakeline.core.governance import text as money_text
from wakeline.core.history import Conversations
from wakeline.core.model import ModelCall, ModelProvider, ModelRequest
from wakeline.core.port import ContextPort
from wakeline.core.results import Approval, LLMResult, StepCall, llm_result
from wakeline.schemas.events import (
    BudgetExceeded,
    BudgetRaised,
    GateOpened,
    GateResolved,
    ModelCallCompleted,
    ModelCallDenied,
    ModelCallFailed,
    ModelCallInterrupted,
    ModelCallRequested,
    PolicyDenied,
    StepCompleted,
    StepFailed,
    StepRequested,
    TimerScheduled,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ValueRecorded,
)


class UnknownToolError(WakelineError):
    pass


class Context:
    """Passed to every agent as its first argument."""

    def __init__(self, core: ContextPort, spec: AgentSpec) -> None:
        self._core = core
        self._spec = spec
        self._conversations = Conversations()

    @property
    def run_id(self) -> str:
        return self._core.run_id

    @property
    def agent(self) -> str:
        return self._spec.name

    @property
    def is_replaying(self) -> bool:
        """True while the run re-executes recorded history (e.g. to skip log lines)."""
        return self._core.replaying

    # -- model calls -----------------------------------------------------------------------
    async def llm(
        self,
        messages: str | Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        provider: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[Mapping[str, Any]] = (),
        stream: bool = False,
        retry: RetryPolicy | None = None,
        via: ModelProvider | None = None,
        **params: Any,
    ) -> LLMResult:
        """Call a model once, durably: a recorded call is returned from the journal.

        ``via``: send it through this provider rather than one of the app's (framework
        adapters: the framework's own model); it is journaled, priced and governed as a call
        of ``via.name``."""
        app = self._core.app
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        request = ModelRequest(
            model=model or self._spec.default_model or app.default_model,
            messages=tuple(dict(m) for m in messages),
            max_tokens=max_tokens,
            temperature=temperature,
            tools=tuple(dict(t) for t in tools),
            params=dict(params),
            stream=stream,
        )
        provider_name = provider or self._spec.default_provider or app.default_provider
        if via is not None:
            provider_name = via.name
        request_json = request.to_json()
        await self._check_policies("model", request.model, provider_name, request_json)
        reservation = reservation_for(app.prices, provider_name, request)
        messages_text = jsonutil.dumps(request_json["messages"])
        requested = self._journaled(provider_name, request_json, messages_text, stream)
        policy = retry or app.retry
        call = request if via is None else ModelCall(request, via)
        result = await self._dispatch(requested, call, reservation, policy, messages_text)
        self._conversations.replied(result.seq, result.message)
        return result

    def _journaled(
        self, provider: str, request: dict[str, Any], messages_text: str, stream: bool
    ) -> ModelCallRequested:
        """The call's event: the whole request's digest, and the request itself as the
        messages it appends to an earlier request of the run, if any (see core.history)."""
        text = history.with_messages(request, messages_text)
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
        reservation: dict[str, Decimal | None],
        policy: RetryPolicy,
        messages_text: str,
    ) -> LLMResult:
        """Send a model call until it completes: every attempt is checked against the run's
        budget first, and an attempt a crash interrupted stays reserved (it may have been
        billed) until a later attempt of the call settles."""
        core = self._core
        request = call if isinstance(call, ModelRequest) else call.request
        attempt = 1
        interrupted: list[int] = []
        while True:
            await self._check_budget(request.model, reservation)
            core.budget.reserve(core.next_seq, reservation, interrupted)
            event = core.emit(dataclasses.replace(requested, attempt=attempt), call)
            self._conversations.requested(event.seq, messages_text)
            result = await core.wait(event.seq)
            if isinstance(result, ModelCallCompleted):
                return llm_result(result, event.seq)
            if isinstance(result, ModelCallInterrupted):
                interrupted.append(event.seq)
                attempt += 1
                continue
            if isinstance(result, ModelCallDenied):  # a shared budget said no: wait
                await self._wait_for_raise(
                    BudgetExceeded(
                        "model",
                        request.model,
                        result.scope,
                        result.metric,
                        result.limit,
                        result.spent,
                        result.reservation,
                    )
                )
                attempt += 1
                continue
            assert isinstance(result, ModelCallFailed)
            interrupted = []  # settled at their worst case with this attempt
            if not result.retriable or attempt >= policy.max_attempts:
                raise ModelCallError("model call", event.seq, result.error_type, result.message)
            await self._timer(policy.backoff_s(attempt), "retry")
            attempt += 1

    # -- tools and steps -------------------------------------------------------------------
    async def tool(self, tool: str | Callable[..., Any] | ToolSpec, /, **args: Any) -> Any:
        """Run a registered tool durably (or a :class:`ToolSpec` an adapter made); returns
        its JSON result."""
        spec = self._find_tool(tool)
        text = jsonutil.dumps(args)
        await self._check_policies("tool", spec.name, "", jsonutil.loads(text))
        if spec.requires_approval:
            await self._approve_tool(spec, text)
        key = ""
        attempt = 1
        while True:
            seq = self._core.next_seq
            key = key or f"{self.run_id}:{seq}"
            requested = ToolCallRequested(
                spec.name, text, jsonutil.digest(text), key, spec.idempotent
            )
            event = self._core.emit(requested, spec)
            result = await self._core.wait(event.seq)
            if isinstance(result, ToolCallCompleted):
                return jsonutil.loads(result.result)
            assert isinstance(result, ToolCallFailed)
            policy = self._core.app.retry
            if not result.retriable or attempt >= policy.max_attempts:
                raise ToolCallError(
                    f"tool {spec.name}", event.seq, result.error_type, result.message
                )
            await self._timer(policy.backoff_s(attempt), "retry")
            attempt += 1

    async def step(self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` (sync or async) once; its JSON result is journaled."""
        event = self._core.emit(StepRequested(name), StepCall(fn, args, kwargs))
        result = await self._core.wait(event.seq)
        if isinstance(result, StepCompleted):
            return jsonutil.loads(result.result)
        assert isinstance(result, StepFailed)
        raise StepFailedError(f"step {name!r}", event.seq, result.error_type, result.message)

    async def _approve_tool(self, spec: ToolSpec, args: str) -> None:
        """``@app.tool(requires_approval=True)``: a durable gate named ``tool:<name>`` opens
        before the tool runs; a rejection raises :class:`ToolCallError` in the agent."""
        body = jsonutil.dumps({"tool": spec.name, "args": jsonutil.loads(args)})
        event = self._core.emit(GateOpened(f"tool:{spec.name}", body, None))
        result = await self._core.wait(event.seq)
        assert isinstance(result, GateResolved)
        if not result.approved:
            why = f"rejected by {result.by or 'someone'}"
            why = f"{why}: {result.reason}" if result.reason else why
            raise ToolCallError(f"tool {spec.name}", event.seq, "ApprovalRejected", why)

    async def approval(
        self,
        name: str,
        payload: Any = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a durable timer, not an asyncio one
    ) -> Approval:
        """Open a human approval gate and wait for approve / reject (or the timeout).

        While it waits the run holds no memory and no task (without a timeout it is unloaded
        until the decision arrives).  The decision is journaled with who made it and why.
        """
        timeout_ms = None if timeout is None else max(0, round(timeout * 1000))
        event = self._core.emit(GateOpened(name, jsonutil.dumps(payload), timeout_ms))
        result = await self._core.wait(event.seq)
        assert isinstance(result, GateResolved)
        return Approval(result.approved, result.by, result.reason, result.timed_out)

    # -- governance --------------------------------------------------------------------------
    async def _check_policies(
        self, kind: Literal["model", "tool"], target: str, provider: str, request: Any
    ) -> None:
        core = self._core
        info = CallInfo(
            kind,
            self.run_id,
            self.agent,
            core.tenant,
            target,
            provider,
            request,
        )
        denial = run_policies(list(core.app.policies.items()), info)
        if denial is None:
            return
        name, decision = denial
        event = core.emit(PolicyDenied(kind, target, name, decision.reason, decision.suspend))
        if not decision.suspend:
            raise core.fail_run("PolicyDenied", f"{name}: {decision.reason}")
        result = await core.wait(event.seq)
        assert isinstance(result, GateResolved)
        if not result.approved:
            why = f"{name}: {decision.reason}; rejected by {result.by or 'someone'}"
            raise core.fail_run("PolicyDenied", f"{why}: {result.reason}" if result.reason else why)

    async def _check_budget(self, target: str, reservation: dict[str, Decimal | None]) -> None:
        core = self._core
        elapsed = core.time_ms - core.started_ms
        while (over := core.budget.check(reservation, elapsed)) is not None:
            await self._wait_for_raise(
                BudgetExceeded(
                    "model",
                    target,
                    "run",
                    over.metric,
                    str(over.limit),
                    str(over.spent),
                    money_text(over.reservation),
                )
            )

    async def _wait_for_raise(self, exceeded: BudgetExceeded) -> None:
        event = self._core.emit(exceeded)
        result = await self._core.wait(event.seq)
        assert isinstance(result, BudgetRaised)

    # -- recorded values and timers ---------------------------------------------------------
    def now(self) -> datetime:
        """The activation's time, recorded: the same value on every replay."""
        value = self._value("CLOCK", lambda: str(self._core.time_ms))
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)

    def uuid(self) -> uuidlib.UUID:
        """A random UUID4, recorded."""
        return uuidlib.UUID(self._value("UUID", lambda: str(_uuid4(self._core.entropy))))

    def random(self) -> float:
        """A float in [0, 1), recorded."""
        value = self._value("RANDOM", lambda: repr(_unit_float(self._core.entropy)))
        return float(value)

    async def sleep(self, seconds: float) -> None:
        """A durable timer: it survives crashes and restarts (the fire time is journaled)."""
        await self._timer(seconds, "sleep")

    # -- helpers ---------------------------------------------------------------------------
    def _value(self, kind: Any, make: Callable[[], str]) -> str:
        live = ValueRecorded(kind, "")
        if not self._core.replaying:
            live = ValueRecorded(kind, make())
        event = self._core.emit(live)
        assert isinstance(event.payload, ValueRecorded)
        return event.payload.value

    async def _timer(self, seconds: float, purpose: str) -> None:
        ms = max(0, round(seconds * 1000))
        event = self._core.emit(TimerScheduled(self._core.time_ms + ms, ms, purpose))
        await self._core.wait(event.seq)

    def _find_tool(self, tool: str | Callable[..., Any] | ToolSpec) -> ToolSpec:
        if isinstance(tool, ToolSpec):  # an adapter's tool, not registered with the app
            return tool
        tools = self._core.app.tools
        if isinstance(tool, str):
            spec = tools.get(tool)
        else:
            spec = next((t for t in tools.values() if t.fn is tool), None)
        if spec is None:
            raise UnknownToolError(f"tool {tool!r} is not registered with @app.tool")
        return spec


def _uuid4(entropy: Callable[[int], bytes]) -> uuidlib.UUID:
    return uuidlib.UUID(bytes=entropy(16), version=4)


def _unit_float(entropy: Callable[[int], bytes]) -> float:
    return (int.from_bytes(entropy(7), "big") >> 3) / float(1 << 53)
