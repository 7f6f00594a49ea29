"""An MCP toolset of a pydantic-ai agent on wakeline: a real stdio MCP server (the official
``mcp`` SDK) reached through pydantic-ai's ``MCPToolset``.  Tool discovery is a journaled step
and each MCP tool call a journaled tool call, entered in the unit that makes it; a replay with
no provider and no MCP server reachable gives back the same journal byte for byte."""

from __future__ import annotations

import sys
from pathlib import Path

from fastmcp.client.transports import StdioTransport
from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from wakeline import App, jsonutil
from wakeline.adapters.pydantic_ai import WakelineDurability, register
from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    RunCompleted,
    RunStarted,
    StepCompleted,
    StepRequested,
    ToolCallCompleted,
    ToolCallRequested,
)
from wakeline.testing import CoreDriver
from wakeline.testing.fake_llm import FakeLLMServer

SERVER = Path(__file__).parent.parent / "support" / "mcp_orders_server.py"


def make_app(base_url: str, calls: Path) -> App:
    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=base_url, api_key="k"))
    transport = StdioTransport(sys.executable, [str(SERVER), str(calls)])
    orders = MCPToolset(transport, id="orders")
    agent = Agent(model, name="orders", toolsets=[orders], capabilities=[WakelineDurability()])
    app = App()
    register(app, agent)
    return app


async def test_mcp_discovery_and_tool_calls_are_journaled_and_replayed(tmp_path: Path) -> None:
    calls = tmp_path / "mcp_calls.txt"
    with FakeLLMServer() as server:
        core = CoreDriver("mcp-1", make_app(server.openai_base_url, calls), always_replay=True)
        await core.drive(core.start(RunStarted("orders", jsonutil.dumps("where is order 1?"))))
        terminal = core.terminal.payload if core.terminal else None
        assert isinstance(terminal, RunCompleted), core.status
        assert server.received == 2
    payloads = [e.payload for e in core.journal]
    [discovery] = [p for p in payloads if isinstance(p, StepRequested)]
    assert discovery.name.endswith("orders.get_tools")
    [listed] = [p for p in payloads if isinstance(p, StepCompleted)]
    assert "order_status" in listed.result
    [call] = [p for p in payloads if isinstance(p, ToolCallRequested)]
    assert (call.tool, jsonutil.loads(call.args)) == ("order_status", {"n": 1})
    [done] = [p for p in payloads if isinstance(p, ToolCallCompleted)]
    assert "order 1 shipped yesterday" in done.result
    assert calls.read_text().split() == ["1"]  # the MCP server ran the tool once

    raw = [event_codec().encode(e) for e in core.journal]
    report = replay_journal(make_app("http://127.0.0.1:9/unreachable", calls), "mcp-1", raw)
    assert report.identical and report.ended
    assert calls.read_text().split() == ["1"]  # the replay reached no MCP server
