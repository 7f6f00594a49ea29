"""The middleware that makes a LangChain agent's model and tool calls wakeline steps, and how a
wakeline run enters it."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain.agents.middleware import ModelRequest as LcRequest
from langchain.agents.middleware import ModelResponse as LcResponse
from langchain_core.messages import AIMessage, ToolMessage, message_to_dict, messages_from_dict
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from wakeline.adapters.langchain.model import (
    FrameworkModel,
    current_run,
    decode,
    model_identity,
    normalized_messages,
    normalized_tools,
    plain,
    request_parameters,
    via_handler,
)
from wakeline.core.app import App, ToolSpec
from wakeline.core.context import Context
from wakeline.core.tools import current_tool_call, running_tool

ToolResult = ToolMessage | Command[Any]
ToolHandler = Callable[[ToolCallRequest], Awaitable[ToolResult]]
ASYNC_ONLY = (
    "a LangChain agent with WakelineMiddleware runs durably only through its async API "
    "(ainvoke / astream): wakeline's steps are awaited"
)


class WakelineMiddleware(AgentMiddleware[Any, Any, Any]):
    """Add last to an agent: ``create_agent(model, tools, middleware=[..., WakelineMiddleware()])``.

    Inside :func:`durable` each model call of the agent is a journaled ``ctx.llm`` call
    made through the agent's own model (priced and governed as a call of the model's
    provider, e.g. ``openai``), and each tool call a ``ctx.tool`` call with the run's
    idempotency key (:func:`wakeline.current_tool_call`).  ``tools``: per-tool options by
    name, e.g. ``{"charge": {"idempotent": False}}``; tools are idempotent by default.
    Outside a wakeline run the middleware changes nothing.

    Put it last (innermost): middleware outside it (retries, fallbacks, summaries) then runs
    in the agent, and each model call it lets through is one wakeline step.  Give the chat
    model ``max_retries=0`` (``ChatOpenAI`` retries twice by itself): wakeline retries 429s and
    5xx on durable timers, each attempt journaled.  Run the agent with ``ainvoke``/``astream``.
    """

    def __init__(self, *, tools: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        super().__init__()
        self._tool_options = {name: dict(options) for name, options in (tools or {}).items()}

    async def awrap_model_call(
        self,
        request: LcRequest[Any],
        handler: Callable[[LcRequest[Any]], Awaitable[LcResponse[Any]]],
    ) -> LcResponse[Any]:
        ctx = current_run.get()
        if ctx is None:
            return await handler(request)
        identity = model_identity(request)
        result = await ctx.llm(
            normalized_messages(request),
            model=identity["model"],
            via=FrameworkModel(identity["provider"], via_handler(handler, request)),
            max_tokens=identity["max_tokens"],
            temperature=identity["temperature"],
            stream=identity["stream"],
            tools=normalized_tools(request),
            settings=plain(request.model_settings),
            parameters=request_parameters(request),
        )
        return decode(result.message["framework"]["langchain"], request)

    async def awrap_tool_call(self, request: ToolCallRequest, handler: ToolHandler) -> ToolResult:
        ctx = current_run.get()
        if ctx is None:
            return await handler(request)
        call = request.tool_call
        name = str(call["name"])
        context = contextvars.copy_context()

        async def run(**_: Any) -> dict[str, Any]:
            key = current_tool_call()  # the effect's: the tool runs in the agent's context
            done = await asyncio.create_task(_as_tool(handler, request, key), context=context)
            if not isinstance(done, ToolMessage):
                raise TypeError(f"tool {name!r} returned a {type(done).__name__}: not journaled")
            out: dict[str, Any] = plain(message_to_dict(done))
            return out

        spec = ToolSpec(name, run, idempotent=self._idempotent(name))
        payload = await ctx.tool(spec, **plain(call.get("args") or {}))
        [message] = messages_from_dict([payload])
        return message  # type: ignore[return-value]  # a ToolMessage, as journaled

    def wrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        if current_run.get() is not None:
            raise RuntimeError(ASYNC_ONLY)
        return handler(request)

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        if current_run.get() is not None:
            raise RuntimeError(ASYNC_ONLY)
        return handler(request)

    def _idempotent(self, tool: str) -> bool:
        return bool(self._tool_options.get(tool, {}).get("idempotent", True))


async def _as_tool(handler: ToolHandler, request: ToolCallRequest, key: Any) -> ToolResult:
    current_run.set(None)  # the tool's own body is not agent code (a sub-agent is part of it)
    with running_tool(key):
        return await handler(request)


@contextlib.contextmanager
def durable(ctx: Context) -> Iterator[None]:
    """Inside this, agents with :class:`WakelineMiddleware` journal into ``ctx``'s run."""
    token = current_run.set(ctx)
    try:
        yield
    finally:
        # an abandoned activation is closed by the collector, in another context: nothing to undo
        with contextlib.suppress(ValueError):
            current_run.reset(token)


def register(app: App, agent: Any, *, name: str) -> None:
    """Register a ``create_agent`` agent as the wakeline agent ``name``: its input is the user
    prompt, its output the text of the agent's last message."""

    async def run(ctx: Context, prompt: str) -> str:
        with durable(ctx):
            state = await agent.ainvoke({"messages": [{"role": "user", "content": prompt}]})
        last = state["messages"][-1]
        return str(last.text if isinstance(last, AIMessage) else last.content)

    run.__name__ = name
    app.agent(run, name=name)
