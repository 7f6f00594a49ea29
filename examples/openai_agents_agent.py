"""An OpenAI Agents SDK agent, unchanged, running durably on wakeline.

Runs on the embedded log with the SDK's own ``OpenAIChatCompletionsModel`` and the official
OpenAI client, whose HTTP transport is a tiny scripted Chat Completions endpoint (it calls the
tool once, then answers with the tool's result) -- no services, no API key
(``pip install 'wakeline[openai-agents]'``):

    wakeline run examples/openai_agents_agent.py:support --input '"where is order 42?"'

Each model request of the agent is a journaled wakeline model call, priced as
``openai/gpt-4o-mini``, and each tool call a journaled tool call: kill the worker at any point
and the run resumes from its log.  For a real model drop ``openai_client=`` (the SDK reads
``OPENAI_API_KEY``) or give the agent ``model="gpt-4o-mini"``.
"""

from __future__ import annotations

import json
import re

import httpx2  # the OpenAI client's HTTP library
from agents import Agent, OpenAIChatCompletionsModel, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from wakeline import App
from wakeline.adapters.openai_agents import register


def scripted_endpoint(request: httpx2.Request) -> httpx2.Response:
    """Chat Completions, scripted: call ``order_status`` for the order, then answer with its
    result."""
    messages = json.loads(request.content)["messages"]
    last = messages[-1]
    if last["role"] == "tool":
        message = {"role": "assistant", "content": f"Good news: {last['content']}."}
    else:
        order = re.findall(r"\d+", last["content"]) or ["0"]
        arguments = json.dumps({"order_id": int(order[0])})
        call = {"id": "call_1", "type": "function", "function": {}}
        call["function"] = {"name": "order_status", "arguments": arguments}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
    usage = {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}
    finish = "tool_calls" if message["content"] is None else "stop"
    choice = {"index": 0, "message": message, "finish_reason": finish}
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0}
    body |= {"model": "gpt-4o-mini", "choices": [choice], "usage": usage}
    return httpx2.Response(200, json=body)


set_tracing_disabled(True)  # the SDK's trace export wants an OpenAI key
client = AsyncOpenAI(
    api_key="no-key-needed",
    http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(scripted_endpoint)),
)


@function_tool
def order_status(order_id: int) -> str:
    """The shipping status of an order."""
    return f"order {order_id} shipped yesterday"


agent = Agent(
    name="support",
    instructions="You answer questions about orders.",
    model=OpenAIChatCompletionsModel("gpt-4o-mini", openai_client=client),
    tools=[order_status],
)

app = App()
register(app, agent)
