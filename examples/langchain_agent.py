"""A LangChain agent (``create_agent``), unchanged, running durably on wakeline.

Runs on the embedded log with a small stand-in chat model (it asks for the order's status
once, then answers with it) -- no services, no API key (``pip install 'wakeline[langchain]'``):

    wakeline run examples/langchain_agent.py:support --input '"where is order 42?"'

Each model call of the agent is a journaled wakeline model call and each tool call a
journaled tool call: kill the worker at any point and the run resumes from its log.  For a
real model, give the agent one, e.g. ``ChatOpenAI(model="gpt-4o-mini", max_retries=0)``
(reads ``OPENAI_API_KEY``; wakeline retries on durable timers); its calls are then priced and
budgeted like any wakeline call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool

from wakeline import App
from wakeline.adapters.langchain import WakelineMiddleware, register


class OrderDesk(BaseChatModel):
    """A stand-in model: a pure function of the conversation, like a recorded one."""

    @property
    def _llm_type(self) -> str:
        return "order-desk"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> OrderDesk:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            reply = AIMessage(content=f"Good news: {last.content}.")
        else:
            found = re.search(r"\d+", str(last.content))
            args = {"order_id": int(found.group()) if found else 0}
            call = {"name": "order_status", "args": args, "id": "call_1"}
            reply = AIMessage(content="", tool_calls=[call])
        return ChatResult(generations=[ChatGeneration(message=reply)])

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        return self._generate(messages)


@tool
def order_status(order_id: int) -> str:
    """The shipping status of an order."""
    return f"order {order_id} shipped yesterday"


agent = create_agent(
    OrderDesk(),
    [order_status],
    system_prompt="You answer questions about orders.",
    middleware=[WakelineMiddleware()],
)

app = App()
register(app, agent, name="support")
