"""A conversation that resends its history is journaled in O(N), and replays byte for byte."""

from __future__ import annotations

from typing import Any

from wakeline import App, Context, jsonutil
from wakeline.actors.effects import run_effect
from wakeline.core.history import expand_requests
from wakeline.providers.mock import MockModel
from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import Event, ModelCallRequested, RunCompleted, RunStarted
from wakeline.testing import CoreDriver

SYSTEM = {"role": "system", "content": "You are terse."}


def user_message(turn: int) -> dict[str, Any]:
    return {
        "role": "user",
        "content": f"turn {turn}: " + "".join(f"w{turn}.{i} " for i in range(30)),
    }


def make_app() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel(replies=lambda r: f"noted {len(r.messages)}"))

    @app.agent
    async def chat(ctx: Context, turns: int) -> int:
        messages: list[dict[str, Any]] = [SYSTEM]
        for turn in range(turns):
            messages.append(user_message(turn))
            reply = await ctx.llm(messages, max_tokens=16)
            messages.append(reply.message)
        return len(messages)

    @app.agent
    async def two_chats(ctx: Context, turns: int) -> list[str]:
        """Two conversations interleaved, one of them rewritten half way (no prefix)."""
        a: list[dict[str, Any]] = [SYSTEM]
        b: list[dict[str, Any]] = [{"role": "system", "content": "You are verbose."}]
        for turn in range(turns):
            for chat in (a, b):
                chat.append(user_message(turn))
                chat.append((await ctx.llm(chat)).message)
            if turn == turns // 2:
                a = [SYSTEM, user_message(-1)]
        return [str(a[-1]["content"]), str(b[-1]["content"])]

    return app


async def run_to_end(agent: str, arg: int) -> CoreDriver:
    core = CoreDriver("chat-1", make_app())
    out = core.start(RunStarted(agent, jsonutil.dumps(arg)))
    pending = list(out.effects)
    while pending:
        effect = pending.pop(0)
        out = core.deliver(await run_effect(core.app, effect, now_ms=lambda: 0))
        pending += out.effects
    assert isinstance(core.terminal.payload if core.terminal else None, RunCompleted)
    return core


def distinct_bytes(journal: list[Event]) -> int:
    """The floor: every distinct message of the conversation once, as JSON."""
    whole = expand_requests(journal)
    messages = {jsonutil.dumps(m) for request in whole.values() for m in request["messages"]}
    last = max(whole)
    replies = [e.payload for e in journal if e.type == "ModelCallCompleted"]
    messages.add(replies[-1].message)  # type: ignore[union-attr]
    assert last in whole
    return sum(len(m.encode()) for m in messages)


def assert_whole_requests_match_their_digests(journal: list[Event]) -> None:
    whole = expand_requests(journal)
    calls = {e.seq: e.payload for e in journal if isinstance(e.payload, ModelCallRequested)}
    assert set(whole) == set(calls)
    for seq, payload in calls.items():
        assert jsonutil.digest(jsonutil.dumps(whole[seq])) == payload.request_digest


async def test_a_1000_call_conversation_stays_within_twice_its_distinct_bytes() -> None:
    core = await run_to_end("chat", 1000)
    raw = [event_codec().encode(e) for e in core.journal]
    journal_bytes, floor = sum(map(len, raw)), distinct_bytes(core.journal)
    assert journal_bytes <= 2 * floor, (journal_bytes, floor)
    whole = expand_requests(core.journal)
    assert len(whole[max(whole)]["messages"]) == 1 + 2 * 1000 - 1  # the last request, whole
    assert_whole_requests_match_their_digests(core.journal)
    report = replay_journal(make_app(), "chat-1", raw)
    assert report.identical and report.ended, report


async def test_requests_that_share_no_prefix_are_journaled_whole_and_interleaved_chats_expand() -> (
    None
):
    core = await run_to_end("two_chats", 6)
    calls = [e.payload for e in core.journal if isinstance(e.payload, ModelCallRequested)]
    assert calls[0].base_seq == -1 and calls[1].base_seq == -1  # two new conversations
    assert all(c.base_seq >= 0 and c.base_reply for c in calls[2:8])
    rewritten = calls[8]  # chat a after the rewrite: [SYSTEM, turn -1, turn 4] extends nothing
    assert rewritten.base_seq == -1
    assert_whole_requests_match_their_digests(core.journal)
    raw = [event_codec().encode(e) for e in core.journal]
    assert replay_journal(make_app(), "chat-1", raw).identical


async def test_a_resumed_conversation_goes_on_extending_its_recorded_requests() -> None:
    core = await run_to_end("chat", 5)
    # a crash right after turn 3's request was journaled, before its reply
    fourth = [e.seq for e in core.journal if isinstance(e.payload, ModelCallRequested)][3]
    again = CoreDriver("chat-1", make_app(), journal=core.journal[: fourth + 1], writer="w2")
    out = again.recover()
    pending = list(out.effects)
    while pending:
        effect = pending.pop(0)
        out = again.deliver(await run_effect(again.app, effect, now_ms=lambda: 0))
        pending += out.effects
    assert again.terminal is not None
    assert_whole_requests_match_their_digests(again.journal)
    resent = [e.payload for e in again.journal[fourth + 1 :] if e.type == "ModelCallRequested"]
    assert resent and all(p.base_seq >= 0 for p in resent)
