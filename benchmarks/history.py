"""Journal bytes of a conversation that resends its whole history on every call.

The agent keeps a chat: each turn appends one user message (about 200 bytes, all different)
and the model's reply, and sends the whole history.  The figure is the run's journal (the
values of every record of its events) beside the floor, the bytes of the distinct messages
as JSON.  Each request is journaled as the messages it appends to the previous exchange
(``wakeline/core/history.py``), so the journal grows linearly; the target is within 2x of
the floor, the rest being a fixed envelope per turn.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from benchmarks.harness import TimedModel, running_worker, scratch_dir
from benchmarks.registry import Profile, Row, register
from wakeline import jsonutil
from wakeline.core.app import App
from wakeline.core.context import Context
from wakeline.topics.partitioner import partition_for
from wakeline.topics.specs import DEFAULT_TOPICS

NAME = "history_bytes"


class Chat(BaseModel):
    turns: int


def _user_message(turn: int) -> dict[str, Any]:
    text = f"turn {turn}: " + " ".join(f"word{turn}x{i}" for i in range(24))
    return {"role": "user", "content": text[:200]}


async def chat(ctx: Context, job: Chat) -> int:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are terse."}]
    for turn in range(job.turns):
        messages.append(_user_message(turn))
        reply = await ctx.llm(messages, max_tokens=16)
        messages.append(reply.message)
    return len(messages)


def _distinct_bytes(turns: int, replies: list[dict[str, Any]]) -> int:
    messages = [{"role": "system", "content": "You are terse."}]
    messages += [_user_message(t) for t in range(turns)] + replies
    return sum(len(jsonutil.dumps(m)) for m in messages)


@register(NAME)
async def history_bytes(profile: Profile) -> list[Row]:
    """One conversation of ``step_calls`` turns (50 quick, 200 full)."""
    turns = profile.step_calls
    app = App(name="bench", default_provider="mock", default_model="mock-1")
    app.provider("mock", TimedModel())
    app.agent(chat, name="chat")
    with scratch_dir() as data:
        async with running_worker(app, data) as h:
            handle = await h.client.start_run("chat", {"turns": turns})
            await h.client.result(handle.run_id, from_offset=handle.from_offset)
            topic = DEFAULT_TOPICS.events
            partition = partition_for(handle.run_id.encode(), await h.log.partition_count(topic))
            journal, replies = 0, []
            offset = 0
            while batch := await h.log.read(topic, partition, offset, max_records=1000):
                for record in batch:
                    if record.key == handle.run_id.encode():
                        journal += len(record.value)
                offset = batch[-1].offset + 1
            for event in [e async for e in h.client.events(handle.run_id)]:
                message = getattr(event.payload, "message", None)
                if event.type == "ModelCallCompleted" and message:
                    replies.append(jsonutil.loads(message))
    floor = _distinct_bytes(turns, replies)
    note = f"{turns} turns, each resending the whole history"
    return [
        Row(NAME, "floor: distinct message bytes", floor, "B", note),
        Row(NAME, "journal bytes of the run", journal, "B"),
        Row(NAME, "journal / floor", journal / floor, "x", "target: <= 2"),
    ]
