"""A pydantic-ai agent, unchanged, running durably on wakeline.

Runs on the embedded log with pydantic-ai's ``TestModel`` (it calls each tool once, then
answers) -- no services, no API key (``pip install 'wakeline[pydantic-ai]'``):

    wakeline run examples/pydantic_ai_agent.py:support --input '"where is order 42?"'

Each model request of the agent is a journaled wakeline model call and each tool call a
journaled tool call: kill the worker at any point and the run resumes from its log.  For a
real model, give the agent one, e.g. ``OpenAIChatModel("gpt-4o-mini")`` (reads
``OPENAI_API_KEY``); its calls are then priced and budgeted like any wakeline call.
"""

from __future__ import annotations

from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel

from wakeline import App
from wakeline.adapters.pydantic_ai import WakelineDurability, register

agent = Agent(
    TestModel(),
    name="support",
    instructions="You answer questions about orders.",
    capabilities=[WakelineDurability()],
)


@agent.tool_plain
def order_status(order_id: int) -> str:
    """The shipping status of an order."""
    return f"order {order_id} shipped yesterday"


app = App()
register(app, agent)
