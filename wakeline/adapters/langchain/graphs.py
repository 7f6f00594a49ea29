"""A LangGraph graph (a ``create_agent`` agent) run in a wakeline run, with its interrupts as
wakeline gates.

LangGraph needs a checkpointer to stop at an ``interrupt()`` and resume later.  In a wakeline
run the journal is what survives a crash: agent code is re-run from the start and every model
call, tool call and gate decision comes back from the journal.  So the checkpointer here is
LangGraph's in-memory one, private to the run and rebuilt by that re-run exactly as it was
(the run's id is the LangGraph ``thread_id``), unless the graph was compiled with a
:class:`~wakeline.adapters.langchain.saver.WakelineSaver` (a session turn's thread is then the
session, its checkpoints kept from turn to turn); each interrupt becomes a durable approval gate
(``ctx.approval``), whose decision -- journaled with who made it and why -- is the value the
graph resumes with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command, Interrupt

from wakeline.adapters.langchain.middleware import durable
from wakeline.adapters.langchain.model import plain
from wakeline.adapters.langchain.saver import WakelineSaver
from wakeline.core.context import Context
from wakeline.core.results import Approval

Answer = Callable[[Any, Approval], Any]
"""The value a graph resumes with, from the interrupt's value and the gate's decision."""


def hitl_answer(value: Any, approval: Approval) -> Any:
    """The default :data:`Answer`.  For LangChain's ``HumanInTheLoopMiddleware`` (a request
    with ``action_requests``) one decision per action: ``approve``, or ``reject`` with the
    reason as its message; for any other interrupt the decision itself (``approved``, ``by``,
    ``reason``, ``timed_out``)."""
    if isinstance(value, Mapping) and isinstance(value.get("action_requests"), list):
        if approval.approved:
            decision: dict[str, Any] = {"type": "approve"}
        else:
            decision = {"type": "reject", "message": approval.reason or "rejected"}
        return {"decisions": [decision for _ in value["action_requests"]]}
    return {
        "approved": approval.approved,
        "by": approval.by,
        "reason": approval.reason,
        "timed_out": approval.timed_out,
    }


def gate_name(value: Any) -> str:
    """``tool:<names>`` for a review of tool calls (their distinct names, in order), else
    ``interrupt``."""
    actions = value.get("action_requests") if isinstance(value, Mapping) else None
    if isinstance(actions, list) and actions:
        names = dict.fromkeys(str(a.get("name", "")) for a in actions if isinstance(a, Mapping))
        return "tool:" + ",".join(names)
    return "interrupt"


async def ainvoke(
    ctx: Context,
    graph: Any,
    input: Any,
    *,
    gate: str | None = None,
    answer: Answer = hitl_answer,
    timeout: float | None = None,  # noqa: ASYNC109 - a durable timer, as ctx.approval's
) -> Any:
    """``graph.ainvoke(input)`` inside ``durable(ctx)``, resumed after each interrupt with the
    decision of a wakeline approval gate (its payload: the interrupt's value) named ``gate``,
    by default ``tool:<name>`` for ``HumanInTheLoopMiddleware``'s review of tool ``name`` (as
    wakeline names a tool's approval gate) and ``interrupt`` for any other interrupt.
    Returns the graph's final state.  A graph compiled with a
    :class:`~wakeline.adapters.langchain.saver.WakelineSaver` keeps it, and in a session turn
    its thread is the session (its state goes on from the previous turn)."""
    run = graph
    if not isinstance(graph.checkpointer, WakelineSaver):
        run = graph.copy(update={"checkpointer": InMemorySaver()})
    thread = ctx.session.id if ctx.in_session and run is graph else ctx.run_id
    config = {"configurable": {"thread_id": thread}}
    value = input
    with durable(ctx):
        while True:
            state = await run.ainvoke(value, config)
            interrupts: list[Interrupt] = list(state.get("__interrupt__") or [])
            if not interrupts:
                return state
            resume = {}
            for interrupt in interrupts:
                name = gate or gate_name(interrupt.value)
                decision = await ctx.approval(name, plain(interrupt.value), timeout=timeout)
                resume[interrupt.id] = answer(interrupt.value, decision)
            value = Command(resume=resume)
