"""OpenAI Agents SDK agents on wakeline, unchanged: run them inside a wakeline agent with
``with durable(ctx):`` (or :func:`register`).

    agent = Agent(name="support", instructions="...", tools=[order_status])
    register(app, agent)                     # a wakeline agent "support": input = the prompt

    @app.agent
    async def triage(ctx, question: str) -> str:
        with durable(ctx):
            return (await Runner.run(agent, question)).final_output

Each model request of the SDK's agent loop (the agent's model, and that of every agent a
handoff leads to) is a journaled ``ctx.llm`` call sent through the model the SDK resolved
(priced, budgeted and governed as a call of its provider, e.g. ``openai``), each function tool
call a ``ctx.tool`` call with the run's idempotency key (:func:`wakeline.current_tool_call`);
a tool's ``needs_approval`` is the durable gate ``tool:<name>`` and a ``session`` is read and
written in steps (``ctx.step``).  ``durable(ctx, tools={"charge": {"idempotent": False}})``: tools
that are never re-run by themselves after a crash.  Outside a wakeline run the SDK behaves as
without wakeline.  ``session=WakelineSession(ctx)`` (what :func:`register` passes for a run that
is a turn of a wakeline session) keeps the conversation in the session's turns.
"""

from wakeline.adapters.openai_agents.model import WakelineModel
from wakeline.adapters.openai_agents.runner import WakelineRunner, durable, install, register
from wakeline.adapters.openai_agents.session import WakelineSession

__all__ = ["WakelineModel", "WakelineRunner", "WakelineSession", "durable", "install", "register"]
