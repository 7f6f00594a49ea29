"""pydantic-ai's human-in-the-loop tool approvals as wakeline approval gates.

A tool declared with ``requires_approval=True`` makes pydantic-ai end the run with
``DeferredToolRequests`` (its public deferred-tools API).  :func:`run_with_approvals` opens one
durable gate per requested approval -- named ``tool:<tool name>``, as for a native
``@app.tool(requires_approval=True)`` -- waits for the decision (``wakeline approve`` /
``Client.approve`` from any process, while no worker need be running), and continues the
agent run with the decisions as ``DeferredToolResults``: an approved call runs (once, with the
run's idempotency key), a rejected one reaches the model as ``ToolDenied`` with who rejected it
and why.
"""

from __future__ import annotations

from typing import Any

from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults, ToolDenied
from pydantic_ai.agent import AgentRunResult

from wakeline.adapters.pydantic_ai.capability import durable
from wakeline.core.context import Context


async def approve_deferred(ctx: Context, requests: DeferredToolRequests) -> DeferredToolResults:
    """The decisions on ``requests.approvals``, one gate each, in order."""
    approvals: dict[str, Any] = {}
    for part in requests.approvals:
        payload = {"tool": part.tool_name, "args": part.args_as_dict(), "id": part.tool_call_id}
        decision = await ctx.approval(f"tool:{part.tool_name}", payload)
        if decision.approved:
            approvals[part.tool_call_id] = True
        else:
            why = f"rejected by {decision.by or 'someone'}"
            approvals[part.tool_call_id] = ToolDenied(
                f"{why}: {decision.reason}" if decision.reason else why
            )
    return DeferredToolResults(approvals=approvals)


async def run_with_approvals(
    ctx: Context, agent: Agent[Any, Any], prompt: str, **kwargs: Any
) -> AgentRunResult[Any]:
    """``agent.run(prompt, **kwargs)`` as a durable part of ``ctx``'s run, going on through
    every approval the agent asks for.  Deferred external calls (``requests.calls``) are not
    approvals: a result that holds any is returned as pydantic-ai returns it."""
    with durable(ctx):
        result = await agent.run(prompt, **kwargs)
        while isinstance(result.output, DeferredToolRequests) and not result.output.calls:
            decisions = await approve_deferred(ctx, result.output)
            result = await agent.run(
                message_history=result.all_messages(), deferred_tool_results=decisions, **kwargs
            )
    return result
