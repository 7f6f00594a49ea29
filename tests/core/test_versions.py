"""``@app.agent(version=...)``: several versions of one agent side by side, the version and a
digest of its code recorded in ``RunStarted``, a run driven by its own version on replay."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Awaitable, Callable

import pytest

from wakeline import App, Context, jsonutil
from wakeline.core.app import AppError
from wakeline.providers.mock import MockModel
from wakeline.replay import replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import ModelCallRequested, RunCompleted, RunStarted
from wakeline.schemas.versions import highest, version_key
from wakeline.testing import CoreDriver


def make_app(*versions: str) -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())
    for version in versions:
        app.agent(_summarize(version), name="summarize", version=version)
    return app


def _summarize(version: str) -> Callable[[Context, str], Awaitable[str]]:
    async def summarize(ctx: Context, topic: str) -> str:
        return (await ctx.llm(f"[{version}] Summarize {topic}.")).text

    return summarize


def test_versions_compare_numerically() -> None:
    assert sorted(["10", "9", "", "1.10", "1.9", "2"], key=version_key) == [
        "",
        "1.9",
        "1.10",
        "2",
        "9",
        "10",
    ]
    assert highest(["2", "10", "3"]) == "10"


def test_a_version_is_registered_once_and_the_highest_is_the_default() -> None:
    app = make_app("9", "10")
    assert app.hosted() == {("summarize", "9"), ("summarize", "10")}
    spec = app.get_agent("summarize")
    assert spec is not None and spec.version == "10"
    assert app.get_agent("summarize", "9") is not None
    assert app.get_agent("summarize", "11") is None
    with pytest.raises(AppError, match="version '9' is registered twice"):
        app.agent(_summarize("9"), name="summarize", version="9")


async def _run(app: App, version: str = "") -> CoreDriver:
    core = CoreDriver("run-1", app)
    first = core.start(RunStarted("summarize", jsonutil.dumps("kelp"), version=version))
    await core.drive(first)
    assert core.terminal is not None and isinstance(core.terminal.payload, RunCompleted)
    return core


async def test_a_start_records_its_version_and_code_digest() -> None:
    app = make_app("1", "2")
    latest = await _run(app)
    started = latest.journal[0].payload
    assert isinstance(started, RunStarted) and started.version == "2"
    spec = app.get_agent("summarize", "2")
    assert spec is not None
    assert started.code_digest == hashlib.sha256(inspect.getsource(spec.fn).encode()).hexdigest()
    pinned = await _run(app, "1")
    first_call = pinned.journal[1].payload
    assert isinstance(first_call, ModelCallRequested)
    assert pinned.journal[0].payload == RunStarted(
        "summarize", jsonutil.dumps("kelp"), version="1", code_digest=started.code_digest
    )  # one function object here: same source, same digest


async def test_replay_drives_a_run_with_its_own_version() -> None:
    old = await _run(make_app("1"))
    raw = [event_codec().encode(e) for e in old.journal]
    both = make_app("1", "2")
    assert replay_journal(both, "run-1", raw).identical  # v1 code, though v2 is the default
    moved = replay_journal(both, "run-1", raw, version="2")
    assert not moved.identical and moved.divergence is not None
    assert moved.divergence.seq == 1  # the model call: v2's prompt differs


async def test_unversioned_agents_keep_working() -> None:
    core = await _run(make_app(""))
    started = core.journal[0].payload
    assert isinstance(started, RunStarted) and started.version == ""
    raw = [event_codec().encode(e) for e in core.journal]
    assert replay_journal(make_app(""), "run-1", raw).identical
