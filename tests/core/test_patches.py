"""``ctx.patched(id)``: a code change that in-flight runs survive.

Runs started by the old code replay past the patch point on the old path (no marker in their
journal); runs that reach it live take the new path and journal a ``PatchApplied`` marker, so
they replay on it too; ``ctx.deprecate_patch(id)`` keeps only the new path and still replays
runs that have the marker.
"""

from __future__ import annotations

from typing import Any

from wakeline import App, Context, jsonutil
from wakeline.providers.mock import MockModel
from wakeline.replay import ReplayReport, replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    GateResolved,
    ModelCallRequested,
    PatchApplied,
    RunCompleted,
    RunStarted,
)
from wakeline.testing import CoreDriver

OLD, NEW = "Summarize {t}.", "Summarize {t} in five words."


def make_app(version: str) -> App:
    """``v1`` the old prompt; ``v2`` the patched change; ``v3`` the patch deprecated."""
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())

    @app.agent
    async def summarize(ctx: Context, topic: str) -> str:
        await ctx.approval("go")  # old runs may wait here while the new code is deployed
        if version == "v1":
            prompt = OLD
        elif version == "v2":
            prompt = NEW if ctx.patched("five-words") else OLD
        else:
            ctx.deprecate_patch("five-words")
            prompt = NEW
        return (await ctx.llm(prompt.format(t=topic))).text

    return app


async def finished(version: str) -> CoreDriver:
    core = CoreDriver(f"run-{version}", make_app(version), always_replay=True)
    core.start(RunStarted("summarize", jsonutil.dumps("kelp")))
    await core.drive(core.deliver(GateResolved(1, True, "ops")))
    assert isinstance(core.terminal.payload if core.terminal else None, RunCompleted)
    return core


def replay(core: CoreDriver, version: str) -> ReplayReport:
    raw = [event_codec().encode(e) for e in core.journal]
    return replay_journal(make_app(version), core.run_id, raw)


def prompts(core: CoreDriver) -> list[Any]:
    requests = [e.payload for e in core.journal if isinstance(e.payload, ModelCallRequested)]
    return [jsonutil.loads(r.request)["messages"][0]["content"] for r in requests]


def markers(core: CoreDriver) -> list[Any]:
    return [e.payload for e in core.journal if isinstance(e.payload, PatchApplied)]


async def test_a_run_of_the_old_code_replays_on_the_old_path() -> None:
    old = await finished("v1")
    assert prompts(old) == ["Summarize kelp."] and markers(old) == []
    assert replay(old, "v2").identical  # the new code, replaying it, takes the old path
    assert not replay(old, "v3").identical  # without the old path it could not


async def test_a_new_run_journals_the_marker_and_replays_on_the_new_path() -> None:
    new = await finished("v2")
    assert prompts(new) == ["Summarize kelp in five words."]
    assert markers(new) == [PatchApplied("five-words")]
    assert replay(new, "v2").identical and replay(new, "v3").identical


async def test_an_old_run_that_reaches_the_patch_after_the_deploy_takes_the_new_path() -> None:
    old = CoreDriver("run-inflight", make_app("v1"), always_replay=True)
    old.start(RunStarted("summarize", jsonutil.dumps("kelp")))  # waits at the gate
    resumed = old.crash(app=make_app("v2"))  # the worker restarts on the new code
    resumed.recover()
    await resumed.drive(resumed.deliver(GateResolved(1, True, "ops")))
    assert prompts(resumed) == ["Summarize kelp in five words."]
    assert markers(resumed) == [PatchApplied("five-words")]


async def test_deprecated_patches_journal_nothing_for_new_runs() -> None:
    newest = await finished("v3")
    assert prompts(newest) == ["Summarize kelp in five words."] and markers(newest) == []
    assert replay(newest, "v3").identical
