"""LangChain 1.x agents on wakeline: add :class:`WakelineMiddleware` to a ``create_agent``
agent and run it inside a wakeline agent (:func:`register`, or ``with durable(ctx):`` in your
own).

    agent = create_agent(model, tools, middleware=[WakelineMiddleware()])
    register(app, agent, name="support")     # a wakeline agent "support": input = the prompt

Each model call of LangChain's agent loop is a journaled ``ctx.llm`` call made through the
agent's own chat model (priced, budgeted and governed as a call of its provider, e.g.
``openai``), and each tool call a ``ctx.tool`` call (with the run's idempotency key,
:func:`wakeline.current_tool_call`).  Outside a wakeline run the middleware changes nothing.
"""

from wakeline.adapters.langchain.middleware import (
    WakelineMiddleware,
    current_run,
    durable,
    register,
)

__all__ = ["WakelineMiddleware", "current_run", "durable", "register"]
