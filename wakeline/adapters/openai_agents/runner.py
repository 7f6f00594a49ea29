"""The wakeline runner: ``Runner.run(agent, input)`` inside ``durable(ctx)`` journals the run.

:func:`durable` installs :class:`WakelineRunner` as the SDK's default runner (``Runner.run``
and ``run_streamed`` go through it; ``run_sync`` needs a loop of its own, which agent code
does not have).  Inside a wakeline run it runs an
execution copy of the agent graph (the starting agent and every agent reachable by handoffs,
each tagged with the user's agent as its public identity, as the SDK's own execution clones
are): each agent's model is a :class:`~.model.WakelineModel` around the one the SDK would
have used, and each function tool's ``on_invoke_tool`` a ``ctx.tool`` call.  Outside a
wakeline run it is the SDK's runner, unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from agents import (
    Agent,
    FunctionTool,
    Handoff,
    Model,
    ModelProvider,
    RunConfig,
    RunResult,
    RunResultStreaming,
    RunState,
    Tool,
    TResponseInputItem,
)
from agents import run as sdk_run
from agents._public_agent import get_public_agent, set_public_agent
from agents.run import AgentRunner
from agents.tool import DEFAULT_APPROVAL_REJECTION_MESSAGE, invoke_function_tool
from agents.tool_context import ToolContext
from agents.util._approvals import evaluate_function_tool_approval

from wakeline import jsonutil
from wakeline.adapters.openai_agents.model import WakelineModel, plain
from wakeline.adapters.openai_agents.session import DurableSession, WakelineSession
from wakeline.adapters.openai_agents.state import current_run, current_tools
from wakeline.core.app import App, ToolSpec
from wakeline.core.context import Context
from wakeline.core.errors import ToolCallError

ToolOptions = Mapping[str, Mapping[str, Any]]
Input = str | list[TResponseInputItem] | RunState[Any]


class WakelineProvider(ModelProvider):
    """The run's model provider, its models wrapped (agents whose model is a name)."""

    def __init__(self, inner: ModelProvider) -> None:
        self.inner = inner

    def get_model(self, model_name: str | None) -> Model:
        return WakelineModel(self.inner.get_model(model_name))

    async def aclose(self) -> None:
        await self.inner.aclose()


class DurableGraph:
    """Execution copies of the agents one SDK run can reach, made once per agent."""

    def __init__(self, tools: ToolOptions) -> None:
        self._tools = tools
        self._copies: dict[int, Agent[Any]] = {}

    def agent(self, agent: Agent[Any]) -> Agent[Any]:
        done = self._copies.get(id(agent))
        if done is not None:
            return done
        model = WakelineModel(agent.model) if isinstance(agent.model, Model) else agent.model
        execution = agent.clone(model=model, tools=[self.tool(t) for t in agent.tools])
        set_public_agent(execution, get_public_agent(agent))
        self._copies[id(agent)] = execution  # before the handoffs: they may lead back here
        execution.handoffs = [self.handoff(h) for h in agent.handoffs]
        return execution

    def handoff(self, handoff: Agent[Any] | Handoff[Any, Any]) -> Any:
        if isinstance(handoff, Agent):
            return self.agent(handoff)
        invoke = handoff.on_invoke_handoff

        async def on_invoke_handoff(context: Any, arguments: str) -> Any:
            return self.agent(await invoke(context, arguments))

        return dataclasses.replace(handoff, on_invoke_handoff=on_invoke_handoff)

    def tool(self, tool: Tool) -> Tool:
        if not isinstance(tool, FunctionTool):
            return tool  # hosted, MCP and computer tools: see the adapter's limits
        options = self._tools.get(tool.name, {})
        journaled = copy.copy(tool)
        journaled.needs_approval = False  # a wakeline gate instead of an SDK interruption
        journaled.timeout_seconds = None  # enforced where the tool runs, not in agent code
        journaled.on_invoke_tool = _journaled_tool(tool, bool(options.get("idempotent", True)))
        return journaled


def _journaled_tool(tool: FunctionTool, idempotent: bool) -> Any:
    """``tool``'s invocation as a ``ctx.tool`` call; a call the tool's ``needs_approval`` says
    needs approval first waits on the durable gate ``tool:<name>``, and a rejection is the
    tool's output, as the SDK tells the model of a rejected call (with who and why)."""
    invoke = tool.on_invoke_tool

    async def on_invoke_tool(context: ToolContext[Any], arguments: str) -> Any:
        ctx = current_run.get()
        if ctx is None:
            return await invoke(context, arguments)

        async def run(**_: Any) -> Any:  # a step's body: runs once, its result journaled
            output = await invoke_function_tool(
                function_tool=tool, context=context, arguments=arguments
            )  # the SDK's own invocation: its timeout, timeout_behavior and error functions
            return tool_result(output)

        approval = await _needs_approval(tool, context, arguments)
        spec = ToolSpec(tool.name, run, idempotent=idempotent, requires_approval=approval)
        try:
            return await ctx.tool(spec, **_arguments(arguments))
        except ToolCallError as exc:
            if exc.error_type != "ApprovalRejected":
                raise
            return f"{DEFAULT_APPROVAL_REJECTION_MESSAGE} ({exc.message})"

    return on_invoke_tool


async def _needs_approval(tool: FunctionTool, context: ToolContext[Any], arguments: str) -> bool:
    """The tool's own ``needs_approval`` for this call (a policy function runs in the agent
    code, as the SDK runs it)."""
    if isinstance(tool.needs_approval, bool):
        return tool.needs_approval
    approval = await evaluate_function_tool_approval(tool, context, arguments, context.tool_call_id)
    return approval.outcome == "require_approval"


def _arguments(arguments: str) -> dict[str, Any]:
    """The call's arguments as the journal's keyword arguments (the model's JSON object)."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"input": arguments}


def tool_result(value: Any) -> Any:
    """A tool's result as journaled JSON: pydantic models dumped, anything else not JSON-able
    as its ``str`` (the SDK sends the model a tool's output as text)."""
    try:
        return plain(value)
    except (TypeError, ValueError):
        return str(value)


class WakelineRunner(AgentRunner):
    """The SDK's runner; inside a wakeline run it runs the durable execution graph."""

    def __init__(self, tools: ToolOptions | None = None) -> None:
        self.tools: ToolOptions = dict(tools or {})

    async def run(self, starting_agent: Agent[Any], input: Input, **kwargs: Any) -> RunResult:
        if current_run.get() is None:
            return await super().run(starting_agent, input, **kwargs)
        agent, kwargs = self._durable(starting_agent, kwargs)
        try:
            return _with_public_agents(await super().run(agent, input, **kwargs))
        except Exception as exc:
            if _closed(exc):  # see _closed
                raise GeneratorExit from None
            raise

    def run_streamed(
        self, starting_agent: Agent[Any], input: Input, **kwargs: Any
    ) -> RunResultStreaming:
        if current_run.get() is None:
            return super().run_streamed(starting_agent, input, **kwargs)
        agent, kwargs = self._durable(starting_agent, kwargs)
        return super().run_streamed(agent, input, **kwargs)

    def _durable(
        self, agent: Agent[Any], kwargs: dict[str, Any]
    ) -> tuple[Agent[Any], dict[str, Any]]:
        config = kwargs.get("run_config")
        if config is None:
            config = RunConfig()
        elif isinstance(config, dict):
            config = RunConfig(**config)
        model = WakelineModel(config.model) if isinstance(config.model, Model) else config.model
        provider = WakelineProvider(config.model_provider)
        config = dataclasses.replace(config, model=model, model_provider=provider)
        kwargs = {**kwargs, "run_config": config}
        session, ctx = kwargs.get("session"), current_run.get()
        if session is not None and ctx is not None and not isinstance(session, WakelineSession):
            kwargs["session"] = DurableSession(ctx, session)
        return DurableGraph({**self.tools, **(current_tools.get() or {})}).agent(agent), kwargs


def _closed(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while the run's coroutine was being closed: wakeline drops
    an activation it no longer needs (a run unloaded while it waits, a replay restarted) and
    the garbage collector closes its coroutine outside the context it ran in, where the SDK's
    context variables cannot be reset.  The close is then finished cleanly, not reported."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, GeneratorExit):
            return True
        seen = seen.__context__
    return False


def _with_public_agents(result: RunResult) -> RunResult:
    """The result as the user's agents made it: its last agent and its items' agents are the
    user's, not their execution copies (the SDK keeps both a strong and a weak reference)."""
    last = get_public_agent(result.last_agent)
    result._last_agent, result._last_agent_ref = last, weakref.ref(last)
    for item in result.new_items:
        agent = item.__dict__.get("agent")
        if agent is not None:
            public = get_public_agent(agent)
            item.agent, item._agent_ref = public, weakref.ref(public)
    return result


def install(tools: ToolOptions | None = None) -> WakelineRunner:
    """Make :class:`WakelineRunner` the SDK's default runner (kept if it already is);
    ``tools``: per-tool options by name, e.g. ``{"charge": {"idempotent": False}}``."""
    runner = sdk_run.get_default_agent_runner()
    if not isinstance(runner, WakelineRunner):
        runner = WakelineRunner()
        sdk_run.set_default_agent_runner(runner)
    if tools is not None:
        runner.tools = {**runner.tools, **tools}
    return runner


@contextlib.contextmanager
def durable(ctx: Context, *, tools: ToolOptions | None = None) -> Iterator[None]:
    """Inside this, ``Runner.run`` / ``run_sync`` / ``run_streamed`` journal into ``ctx``'s
    run: model requests as ``ctx.llm`` calls, function tool calls as ``ctx.tool`` calls.
    ``tools`` (per-tool options by name) apply inside this scope only."""
    install()
    token, tools_token = current_run.set(ctx), current_tools.set(dict(tools or {}))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # closed from elsewhere (a dropped activation)
            current_tools.reset(tools_token)
        with contextlib.suppress(ValueError):
            current_run.reset(token)


def register(
    app: App, agent: Agent[Any], *, name: str | None = None, tools: ToolOptions | None = None
) -> None:
    """Register ``agent`` as the wakeline agent ``name`` (default: the agent's name): its input
    is the user's input, its output the run's ``final_output`` (as JSON).  A run that is a
    turn of a wakeline session runs with ``session=WakelineSession(ctx)``: the conversation
    goes on from the session's earlier turns."""
    from agents import Runner

    agent_name = name or agent.name

    async def run(ctx: Context, prompt: str) -> Any:
        session = WakelineSession(ctx) if ctx.in_session else None
        with durable(ctx, tools=tools):
            result = await Runner.run(agent, prompt, session=session)
        return jsonutil.loads(jsonutil.dumps(plain(result.final_output)))

    run.__name__ = agent_name
    app.agent(run, name=agent_name)
