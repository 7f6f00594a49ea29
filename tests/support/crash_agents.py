"""Agents for crash tests: a worker process SIGKILLs itself at a chosen point of a model call.

    WAKELINE_TEST_LLM_URL=URL WAKELINE_TEST_CRASH=MODE:N python -m wakeline.testing.worker_process \
        tests/support/crash_agents.py:app_from_env() --log-hook tests/support/crash_agents.py:arm

MODE is ``before_send`` (the request is journaled, the HTTP request is not sent yet),
``after_answer`` (the provider answered, the result is not journaled yet) or ``after_journal``
(the result was appended).  The kill points are put in place by wrapping the ports -- the model
port (:func:`app_from_env`) and the log port (:func:`arm`) -- exactly as the worker sees them,
not by hooks in wakeline itself.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workers import SUPPORT, llm_url, log_charge, worker_command

from wakeline import App, Context, ToolCallError
from wakeline.core.model import DeltaSink, ModelRequest, ModelResponse
from wakeline.providers.openai_compat import OpenAICompatProvider
from wakeline.topics.port import Log, OffsetCommit, OutRecord, PartitionWriter

STEPS = 4
CRASH_ENV = "WAKELINE_TEST_CRASH"


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillingProvider:
    def __init__(self, inner: OpenAICompatProvider, mode: str, at: int) -> None:
        self._inner, self._mode, self._at, self._calls = inner, mode, at, 0

    @property
    def name(self) -> str:
        return self._inner.name

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> ModelResponse:
        self._calls += 1
        if self._mode == "before_send" and self._calls == self._at:
            die()
        response = await self._inner.complete(request, on_delta=on_delta)
        if self._mode == "after_answer" and self._calls == self._at:
            die()
        return response


class KillingWriter:
    def __init__(self, inner: PartitionWriter, at: int, counter: list[int]) -> None:
        self._inner, self._at, self._counter = inner, at, counter

    @property
    def partition(self) -> int:
        return self._inner.partition

    async def append(
        self, topic: str, records: Sequence[OutRecord], *, commit: OffsetCommit | None = None
    ) -> list[int]:
        offsets = await self._inner.append(topic, records, commit=commit)
        for record in records:
            if record.headers and dict(record.headers).get("type") == b"ModelCallCompleted":
                self._counter[0] += 1
                if self._counter[0] == self._at:
                    die()
        return offsets

    async def close(self) -> None:
        await self._inner.close()


def arm(log: Log) -> Log:
    """The ``--log-hook``: with ``after_journal:N`` the Nth appended model call result kills."""
    mode, _, at = os.environ.get(CRASH_ENV, "").partition(":")
    if mode != "after_journal":
        return log
    inner, counter = log.writer, [0]

    async def writer(writer_id: str, partition: int) -> PartitionWriter:
        return KillingWriter(await inner(writer_id, partition), int(at), counter)

    log.writer = writer  # type: ignore[method-assign]
    return log


def make_app(base_url: str, mode: str = "", at: int = 0) -> App:
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    provider = OpenAICompatProvider(base_url=base_url, api_key="test-key")
    app.provider("openai", KillingProvider(provider, mode, at) if mode else provider)

    @app.agent
    async def planner(ctx: Any, goal: str) -> dict[str, Any]:
        notes: list[str] = []
        for step in range(STEPS):
            reply = await ctx.llm(
                [
                    {"role": "system", "content": "You plan in small steps."},
                    {"role": "user", "content": f"step {step} of {goal}; so far: {notes}"},
                ],
                max_tokens=64,
            )
            notes.append(reply.text)
        return {"goal": goal, "notes": notes}

    add_approver(app)

    @app.agent
    async def streamer(ctx: Context, prompt: str) -> str:
        return (await ctx.llm(prompt, stream=True, max_tokens=64)).text

    return app


REFUND = {
    "type": "function",
    "function": {
        "name": "refund",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}},
    },
}


def add_approver(app: App) -> None:
    """``approver``: the model asks for ``refund``, a tool that needs a person's approval; it
    logs its idempotency key to ``$WAKELINE_TEST_DATA/charges.txt`` when it runs."""

    @app.tool(requires_approval=True, idempotent=False)
    def refund(n: int) -> str:
        log_charge()
        return f"refunded {n}"

    @app.agent
    async def approver(ctx: Context, goal: str) -> str:
        messages: list[dict[str, Any]] = [{"role": "user", "content": f"refund {goal}"}]
        reply = await ctx.llm(messages, tools=[REFUND], max_tokens=64)
        messages.append(reply.message)
        for call in reply.tool_calls:
            try:
                result = await ctx.tool("refund", **json.loads(call["function"]["arguments"]))
            except ToolCallError as exc:  # rejected: the model is told
                result = exc.message
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": str(result)})
        return (await ctx.llm(messages, max_tokens=64)).text


def app_from_env() -> App:
    mode, _, at = os.environ.get(CRASH_ENV, "").partition(":")
    kill = mode if mode in ("before_send", "after_answer") else ""
    return make_app(llm_url(), kill, int(at or 0))


def command(data: Path, target: str = "crash_agents.py:app_from_env()") -> list[str]:
    """The worker process of ``target`` with this module's log hook, as the CLI runs it: its
    default state directory (a slot under ``DATA/state``), so the process started after a
    crash takes over the dead one's slot and the state it left, restarted in place."""
    return worker_command(
        target,
        "--data",
        str(data),
        "--session-timeout",
        "1.0",
        "--log-hook",
        f"{SUPPORT / 'crash_agents.py'}:arm",
    )
