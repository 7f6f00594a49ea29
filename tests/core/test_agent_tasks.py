"""Tasks an agent starts itself: an exception nobody awaits fails the run instead of vanishing."""

from __future__ import annotations

import asyncio
import contextvars
import gc
from typing import Any

from wakeline import App, Context, jsonutil
from wakeline.actors.effects import run_effect
from wakeline.core.activation import Activation, Completion, Ended, Start
from wakeline.core.run_core import RunCore
from wakeline.providers.mock import MockModel
from wakeline.schemas.events import RunCompleted, RunFailed, RunStarted
from wakeline.testing import CoreDriver


def make_app() -> App:
    app = App()
    app.provider("mock", MockModel())

    async def boom(ctx: Context) -> None:
        await ctx.llm("first")
        raise ValueError("the background task broke")

    @app.agent
    async def forgets(ctx: Context, n: int) -> str:
        asyncio.get_running_loop().create_task(boom(ctx))  # fire and forget
        await ctx.llm("second")
        await ctx.llm("third")
        return "done"

    @app.agent
    async def handles(ctx: Context, n: int) -> str:
        task = asyncio.get_running_loop().create_task(boom(ctx))
        await ctx.llm("second")
        try:
            await task
        except ValueError as exc:
            return f"handled: {exc}"
        return "not reached"

    @app.agent
    async def waits_forever(ctx: Context, n: int) -> str:
        ready = asyncio.Event()

        async def setter() -> None:
            await boom(ctx)
            ready.set()  # never reached

        asyncio.get_running_loop().create_task(setter())
        await ready.wait()
        return "not reached"

    @app.agent
    async def leaves_garbage(ctx: Context, n: int) -> str:
        _Abandoned()  # unreachable at once
        held = [[] for _ in range(100)]  # allocations past the collector's threshold
        return (await ctx.llm(f"after {len(held)}")).text

    return app


async def run_to_end(agent: str) -> tuple[CoreDriver, Completion]:
    core = CoreDriver("r", make_app(), always_replay=True)
    out = core.start(RunStarted(agent, jsonutil.dumps(1)))
    pending = list(out.effects)
    while pending and not out.finished:
        effect = pending.pop(0)
        out = core.deliver(await run_effect(core.app, effect, now_ms=lambda: 0))
        pending += out.effects
    return core, out


def terminal_payload(core: CoreDriver) -> Any:
    assert isinstance(core.status, Ended), core.status
    return core.status.terminal.payload


async def test_an_unawaited_task_that_fails_fails_the_run_with_its_error() -> None:
    core, _ = await run_to_end("forgets")
    failed = terminal_payload(core)
    assert isinstance(failed, RunFailed) and failed.error_type == "ValueError"
    assert "the background task broke" in failed.message and "background task" in failed.message


async def test_a_task_the_agent_awaits_and_handles_does_not_fail_the_run() -> None:
    core, _ = await run_to_end("handles")
    done = terminal_payload(core)
    assert isinstance(done, RunCompleted)
    assert jsonutil.loads(done.output) == "handled: the background task broke"


async def test_a_run_blocked_on_a_failed_task_fails_instead_of_hanging() -> None:
    core, out = await run_to_end("waits_forever")
    failed = terminal_payload(core)
    assert isinstance(failed, RunFailed) and failed.error_type == "ValueError"
    assert out.effects == ()


async def test_the_failure_replays_identically() -> None:
    core, _ = await run_to_end("forgets")
    again = core.crash(writer="replayer").recover()
    assert again.events == () and isinstance(again.status, Ended)
    assert again.status.terminal == core.terminal


class _Abandoned:
    """A library's suspended coroutine left in a reference cycle, as a closed event loop leaves
    its pending tasks: when the garbage collector closes it, its ``finally`` schedules clean-up
    on whatever loop is running (the Kafka reader pool's release did exactly that)."""

    def __init__(self) -> None:
        self.me = self

        async def cleanup() -> None:
            raise RuntimeError("Event loop is closed")

        async def reading() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                asyncio.get_running_loop().create_task(cleanup())

        self.coro = reading()
        self.coro.send(None)  # suspended inside the try


async def test_a_foreign_finalizer_run_by_the_gc_during_agent_code_does_not_fail_the_run() -> None:
    threshold = gc.get_threshold()
    gc.collect()
    gc.set_threshold(10)  # so the agent's allocations start a collection, if allowed
    try:
        core, _ = await run_to_end("leaves_garbage")
    finally:
        gc.set_threshold(*threshold)
        gc.collect()
    assert isinstance(terminal_payload(core), RunCompleted)


def test_a_dropped_core_cleans_up_its_agent_code_now_and_journals_nothing() -> None:
    where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="outside")
    cleaned: list[str] = []
    app = App()

    @app.agent
    async def waiting(ctx: Any, n: int) -> int:
        token = where.set("agent")
        try:
            await ctx.approval("go")
            return n
        finally:
            cleaned.append(where.get())
            where.reset(token)  # in its own context: no "created in a different Context"
            await ctx.sleep(1)  # agent code may not journal anything any more

    core = RunCore("drop-1", app)
    out = core.activate(Activation(Start(RunStarted("waiting", "1")), 0, "w"))
    assert [type(e.payload).__name__ for e in out.events] == ["RunStarted", "GateOpened"]
    core.close()
    assert cleaned == ["agent"]
