"""LangChain 1.x agents on wakeline: add :class:`WakelineMiddleware` to a ``create_agent``
agent and run it inside a wakeline agent (:func:`register`, or ``with durable(ctx):`` in your
own).

    agent = create_agent(model, tools, middleware=[WakelineMiddleware()])
    register(app, agent, name="support")     # a wakeline agent "support": input = the prompt

Each model call of LangChain's agent loop is a journaled ``ctx.llm`` call made through the
agent's own chat model (priced, budgeted and governed as a call of its provider, e.g.
``openai``), and each tool call a ``ctx.tool`` call (with the run's idempotency key,
:func:`wakeline.current_tool_call`).  Outside a wakeline run the middleware changes nothing.
:func:`ainvoke` runs a graph whose ``interrupt()`` calls (e.g. ``HumanInTheLoopMiddleware``'s)
become wakeline approval gates.  For a ``StateGraph`` of your own, wrap its chat model in
:class:`DurableChatModel` and pass ``awrap_tool_call=WakelineMiddleware().awrap_tool_call`` to
its ``ToolNode``; compile it with :class:`WakelineSaver` to keep a thread's state across the
turns of a wakeline session.
"""

from wakeline.adapters.langchain.chat_model import DurableChatModel
from wakeline.adapters.langchain.graphs import ainvoke, hitl_answer
from wakeline.adapters.langchain.middleware import WakelineMiddleware, durable, register
from wakeline.adapters.langchain.model import current_run
from wakeline.adapters.langchain.saver import WakelineSaver

__all__ = [
    "DurableChatModel",
    "WakelineMiddleware",
    "WakelineSaver",
    "ainvoke",
    "current_run",
    "durable",
    "hitl_answer",
    "register",
]
