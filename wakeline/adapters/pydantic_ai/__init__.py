"""pydantic-ai agents on wakeline: attach :class:`WakelineDurability` to an ``Agent`` and run
it inside a wakeline agent (:func:`register`, or ``with durable(ctx):`` in your own).

    agent = Agent(model, name="support", capabilities=[WakelineDurability()])
    register(app, agent)                     # a wakeline agent "support": input = the prompt

Each model request of the agent is a journaled ``ctx.llm`` call sent through the agent's own
model (priced, budgeted and governed as a call of ``model.system``), each function or MCP tool
call a ``ctx.tool`` call (with the run's idempotency key, :func:`wakeline.current_tool_call`),
and everything else pydantic-ai makes durable (discovery, event handlers) a ``ctx.step``.
Tools declared with ``requires_approval=True`` wait on wakeline approval gates
(:func:`run_with_approvals`).  Outside a wakeline run the capability changes nothing.
"""

from wakeline.adapters.pydantic_ai.approvals import approve_deferred, run_with_approvals
from wakeline.adapters.pydantic_ai.capability import WakelineDurability, durable, register
from wakeline.adapters.pydantic_ai.events import fail_external_event, resolve_external_event

__all__ = [
    "WakelineDurability",
    "approve_deferred",
    "durable",
    "fail_external_event",
    "register",
    "resolve_external_event",
    "run_with_approvals",
]
