"""``Context``: what agent code calls.  Every call is journaled through the run's core."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from wakeline import jsonutil
from wakeline.core.app import AgentSpec, RetryPolicy, ToolSpec
from wakeline.core.errors import StepFailedError, ToolCallError, WakelineError
from wakeline.core.guards import call_info, check_policies, timer
from wakeline.core.model import ModelProvider, ModelRequest
from wakeline.core.model_calls import ModelCalls
from wakeline.core.port import ContextPort
from wakeline.core.results import Approval, LLMResult, StepCall
from wakeline.core.routing import Route, RouteError
from wakeline.schemas.events import (
    GateOpened,
    GateResolved,
    PatchApplied,
    StepCompleted,
    StepFailed,
    StepRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ValueRecorded,
)

if TYPE_CHECKING:
    from wakeline.core.sessions import SessionView


class UnknownToolError(WakelineError):
    pass


class Context:
    """Passed to every agent as its first argument."""

    def __init__(self, core: ContextPort, spec: AgentSpec) -> None:
        self._core = core
        self._spec = spec
        self._models = ModelCalls(core, spec.name)
        self._session: SessionView | None = None  # set before the agent runs (core.sessions)

    @property
    def run_id(self) -> str:
        return self._core.run_id

    @property
    def agent(self) -> str:
        return self._spec.name

    @property
    def session(self) -> SessionView:
        """The session this run is a turn of: ``.id``, ``.turn``, ``.history`` (the earlier
        turns), ``.messages()``, ``.items`` (see :mod:`wakeline.core.sessions`)."""
        if self._session is None:
            raise WakelineError(f"run {self.run_id} is not a turn of a session")
        return self._session

    @property
    def in_session(self) -> bool:
        """Whether this run is a turn of a session (:attr:`session`)."""
        return self._session is not None

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
        route: str | None = None,
        **params: Any,
    ) -> LLMResult:
        """Call a model once, durably: a recorded call is returned from the journal.

        ``via``: send it through this provider rather than one of the app's (framework
        adapters: the framework's own model); it is journaled, priced and governed as a call
        of ``via.name``.  ``route``: send it to the first target of ``app.route(route, ...)``
        that the policies allow, the budget covers and that answers (see core.routing)."""
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
        if route is not None:
            return await self._models.routed(self._route(route, model, provider, via), request)
        provider_name = provider or self._spec.default_provider or app.default_provider
        if via is not None:
            provider_name = via.name
        return await self._models.call(request, provider_name, via, retry or app.retry)

    def _route(
        self, name: str, model: str | None, provider: str | None, via: ModelProvider | None
    ) -> Route:
        if model is not None or provider is not None or via is not None:
            raise RouteError(
                "ctx.llm(route=...) takes its models from the route: no model=, provider= or via="
            )
        found = self._core.app.routes.get(name)
        if found is None:
            known = ", ".join(sorted(self._core.app.routes)) or "none"
            raise RouteError(f"route {name!r} is not declared with app.route (known: {known})")
        return found

    # -- tools and steps -------------------------------------------------------------------
    async def tool(self, tool: str | Callable[..., Any] | ToolSpec, /, **args: Any) -> Any:
        """Run a registered tool durably (or a :class:`ToolSpec` an adapter made); returns
        its JSON result."""
        spec = self._find_tool(tool)
        text = jsonutil.dumps(args)
        info = call_info(self._core, self.agent, "tool", spec.name, "", jsonutil.loads(text))
        await check_policies(self._core, info)
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
            await timer(self._core, policy.backoff_s(attempt), "retry")
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
        await timer(self._core, seconds, "sleep")

    # -- code changes ----------------------------------------------------------------------
    def patched(self, patch: str) -> bool:
        """Whether to take the new code path of the change named ``patch``: True for a run
        that is live here (a marker is journaled) or that journaled the marker before; False
        for a run started by older code that replays past this point without it.

            if ctx.patched("shorter-prompt"):
                reply = await ctx.llm(NEW_PROMPT)
            else:
                reply = await ctx.llm(OLD_PROMPT)
        """
        recorded = self._core.recorded_next()
        if recorded is not None and recorded != PatchApplied(patch):
            return False  # older code went on without the marker: its path, not this one
        self._core.emit(PatchApplied(patch))
        return True

    def deprecate_patch(self, patch: str) -> None:
        """Once no run without ``patch``'s marker is left, replace ``if ctx.patched(patch):``
        with this and keep only the new path: it consumes the marker of runs that have it."""
        if self._core.recorded_next() == PatchApplied(patch):
            self._core.emit(PatchApplied(patch))

    # -- helpers ---------------------------------------------------------------------------
    def _value(self, kind: Any, make: Callable[[], str]) -> str:
        live = ValueRecorded(kind, "")
        if not self._core.replaying:
            live = ValueRecorded(kind, make())
        event = self._core.emit(live)
        assert isinstance(event.payload, ValueRecorded)
        return event.payload.value

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
