"""pydantic-ai's external events on wakeline: ``RequestInput`` (built on
``wait_for_external_event``) asks once, as a journaled step, then waits on the durable gate
``event:<name>``; the decision, made after a crash, carries the answer, the approved tool runs
once, nothing journaled is sent again and the journal replays byte for byte."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults
from pydantic_ai.capabilities import RequestInput
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from wakeline import App, jsonutil
from wakeline.adapters.pydantic_ai import WakelineDurability, register
from wakeline.adapters.pydantic_ai.events import parse_token
from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import GateOpened, GateResolved, RunCompleted, RunStarted
from wakeline.testing import CoreDriver
from wakeline.testing.fake_llm import FakeLLMServer

ASKED: list[tuple[list[str], str]] = []
REFUNDS: list[int] = []


async def ask(ctx: Any, requests: DeferredToolRequests, token: str) -> None:
    ASKED.append(([p.tool_call_id for p in requests.approvals], token))  # "post it to Slack"


def make_app(base_url: str) -> App:
    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=base_url, api_key="k"))
    capabilities = [WakelineDurability(), RequestInput(ask=ask)]
    agent = Agent(model, name="refunds", capabilities=capabilities)

    @agent.tool_plain(requires_approval=True)
    def refund(n: int) -> str:
        REFUNDS.append(n)
        return f"refunded {n}"

    app = App()
    register(app, agent)
    return app


async def test_a_request_for_input_waits_on_a_gate_across_a_crash() -> None:
    ASKED.clear()
    REFUNDS.clear()
    with FakeLLMServer() as server:
        core = CoreDriver("events-1", make_app(server.openai_base_url), always_replay=True)
        await core.drive(core.start(RunStarted("refunds", jsonutil.dumps("refund order 7"))))
        [gate] = [e for e in core.journal if isinstance(e.payload, GateOpened)]
        assert isinstance(gate.payload, GateOpened)
        assert gate.payload.name == "event:deferred_tool_calls" and REFUNDS == []
        [(ids, token)] = ASKED
        assert jsonutil.loads(gate.payload.payload) == {"token": token}
        assert parse_token(token) == ("events-1", "event:deferred_tool_calls")

        fresh = core.crash(app=make_app(server.openai_base_url))  # decided while none runs
        fresh.recover()
        answer = DeferredToolResults(approvals={ids[0]: True})
        reason = jsonutil.dumps(TypeAdapter(DeferredToolResults).dump_python(answer, mode="json"))
        await fresh.drive(fresh.deliver(GateResolved(gate.seq, True, "ops", reason)))
        terminal = fresh.terminal.payload if fresh.terminal else None
        assert isinstance(terminal, RunCompleted), fresh.status
        assert REFUNDS == [1] and len(ASKED) == 1  # asked once, refunded once
        digests = [r.digest for r in server.requests()]
        assert len(digests) == len(set(digests)) == 2  # nothing journaled was sent again

    raw = [event_codec().encode(e) for e in fresh.journal]
    report = replay_journal(make_app("http://127.0.0.1:9/unreachable"), "events-1", raw)
    assert report.identical and report.ended
    assert REFUNDS == [1] and len(ASKED) == 1
