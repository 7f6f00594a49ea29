"""``wakeline fork RUN --at SEQ [--model M]``: a new run reuses the source's journal before
SEQ -- no provider request for any step before it (by the fake server's log), their cost
stays the source's -- and runs live from SEQ with the override; ``diff`` names SEQ."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pytest
from test_cli import cli

from wakeline import App, Context
from wakeline.client import Client
from wakeline.diffing import diff_runs
from wakeline.forking import ForkError
from wakeline.providers.mock import MockModel
from wakeline.providers.openai_compat import OpenAICompatProvider
from wakeline.replay import read_journal, replay_run
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import Event, ModelCallRequested, RunStarted
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.harness import local_runtime
from wakeline.testing.waits import wait_until_ended


def make_app(base_url: str) -> App:
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    app.provider("openai", OpenAICompatProvider(base_url=base_url, api_key="test-key"))

    @app.agent
    async def writer(ctx: Context, topic: str) -> list[list[str]]:
        drafts: list[list[str]] = []
        for step in ("outline", "draft", "polish"):
            reply = await ctx.llm(f"{step} an essay on {topic}; so far: {drafts}", max_tokens=32)
            drafts.append([reply.model, reply.text])
        return drafts

    return app


def requested(events: list[Event]) -> list[Event]:
    return [e for e in events if isinstance(e.payload, ModelCallRequested)]


async def test_a_fork_reuses_the_journal_before_its_seq_and_runs_live_from_there(
    tmp_path: Path,
) -> None:
    with FakeLLMServer() as server:
        app = make_app(server.openai_base_url)
        async with (
            local_runtime(app, tmp_path / "data") as rt,
            Client(rt.log, views_dir=tmp_path / "views") as client,
        ):
            source = await client.start_run("writer", "kelp")
            original = await client.result(source.run_id)
            source_events = [e async for e in client.events(source.run_id)]
            at = requested(source_events)[1].seq  # redo from the second call
            sent_before = [r.digest for r in server.requests()]

            fork = await client.fork(source.run_id, at=at, model="gpt-4o")
            forked = await client.result(fork.run_id)
            fork_events = [e async for e in client.events(fork.run_id)]
            new_requests = server.requests()[len(sent_before) :]
            rows = {r: await client.get(r) for r in (source.run_id, fork.run_id)}
            by_model = {row.model: row for row in await client.costs("model")}
            replayed = await replay_run(rt.log, make_app("http://127.0.0.1:9/v1"), fork.run_id)

    assert len(sent_before) == 3 and len(new_requests) == 2  # nothing before seq `at` again
    assert [r.model for r in new_requests] == ["gpt-4o", "gpt-4o"]
    assert not {r.digest for r in new_requests} & {sent_before[0]}
    assert forked[0] == original[0]  # the reused step, as recorded
    assert [m for m, _ in forked] == ["gpt-4o-mini", "gpt-4o", "gpt-4o"] != [m for m, _ in original]
    assert [e.payload for e in fork_events[1:at]] == [e.payload for e in source_events[1:at]]
    # the reused call's cost stays the source's: the fork pays for its two new calls only
    source_row, fork_row = rows[source.run_id], rows[fork.run_id]
    assert source_row is not None and fork_row is not None
    mini = Decimal(by_model["gpt-4o-mini"].cost_usd)
    assert mini == Decimal(source_row.cost_usd) > 0  # only the source's three calls
    assert Decimal(fork_row.cost_usd) == Decimal(by_model["gpt-4o"].cost_usd) > 0
    assert by_model["gpt-4o"].model_calls == 2
    assert replayed.identical and replayed.ended
    first = diff_runs(source_events, fork_events).first_divergence
    assert first is not None and first.a is not None and first.a.seq == at  # diff names `at`


async def test_a_fork_point_must_be_a_call(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        async with local_runtime(make_app(server.openai_base_url), tmp_path / "data") as rt:
            source = await rt.client.start_run("writer", "kelp")
            await rt.client.result(source.run_id)
            with pytest.raises(ForkError, match="is not a model or tool call"):
                await rt.client.fork(source.run_id, at=2)  # a result, not a call
            with pytest.raises(ForkError, match="has no seq 99"):
                await rt.client.fork(source.run_id, at=99)
            with pytest.raises(ForkError, match="no journal"):
                await rt.client.fork("0" * 32, at=1)


def test_the_cli_refuses_a_point_that_is_not_a_call(tmp_path: Path) -> None:
    agents = Path(__file__).parent / "support" / "regress_agents.py"
    code, out = cli(tmp_path, "run", f"{agents}:summarize", "--input", '"kelp"')
    assert code == 0, out
    source = re.findall(r"run ([0-9a-f]{32})", out)[-1]
    code, out = cli(tmp_path, "fork", source, "--at", "2")
    assert code == 2 and "seq 2 of run" in out and "not a model or tool call" in out, out


def make_researcher(base_url: str, lookups: list[str]) -> App:
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    app.provider("openai", OpenAICompatProvider(base_url=base_url, api_key="test-key"))

    @app.tool
    def lookup(term: str) -> str:
        lookups.append(term)  # a tool with a cost of its own: count its executions
        return f"facts about {term}"

    @app.agent
    async def researcher(ctx: Context, topic: str) -> list[str]:
        plan = await ctx.llm(f"plan research on {topic}", max_tokens=16)
        facts = await ctx.tool(lookup, term=topic)
        answer = await ctx.llm(f"answer with {facts} after {plan.text}", max_tokens=16)
        return [plan.model, answer.model, str(facts)]

    @app.agent
    async def careful(ctx: Context, topic: str) -> str:
        await ctx.llm(f"plan research on {topic}", max_tokens=16)
        await ctx.approval("go")  # the run is unloaded here and resumed by the decision
        return str(await ctx.tool(lookup, term=topic))

    return app


@pytest.mark.parametrize("tools", ["live", "recorded"])
async def test_a_fork_runs_its_tools_again_or_serves_the_recorded_results(
    tmp_path: Path, tools: str
) -> None:
    lookups: list[str] = []
    with FakeLLMServer() as server:
        app = make_researcher(server.openai_base_url, lookups)
        async with local_runtime(app, tmp_path / "data") as rt:
            source = await rt.client.start_run("researcher", "kelp")
            await rt.client.result(source.run_id)
            events = [e async for e in rt.client.events(source.run_id)]
            at = requested(events)[0].seq  # redo everything from the first call
            fork = await rt.client.fork(source.run_id, at=at, model="gpt-4o", tools=tools)
            forked = await rt.client.result(fork.run_id)
    assert forked == ["gpt-4o", "gpt-4o", "facts about kelp"]
    assert lookups == (["kelp", "kelp"] if tools == "live" else ["kelp"])


async def test_a_resumed_fork_still_serves_the_recorded_results(tmp_path: Path) -> None:
    lookups: list[str] = []
    with FakeLLMServer() as server:
        app = make_researcher(server.openai_base_url, lookups)
        async with local_runtime(app, tmp_path / "data") as rt:
            source = await rt.client.start_run("careful", "kelp")
            await rt.wait_unloaded(source.run_id)
            await rt.client.approve(source.run_id, "go")
            assert await rt.client.result(source.run_id) == "facts about kelp"
            fork = await rt.client.fork(source.run_id, at=1, tools="recorded")
            await rt.wait_unloaded(fork.run_id)  # at the gate: a decision loads it again
            await rt.client.approve(fork.run_id, "go")
            assert await rt.client.result(fork.run_id) == "facts about kelp"
    assert lookups == ["kelp"]  # the resumed fork served the source's result


def versioned_app() -> App:
    app = App()
    app.provider("mock", MockModel())
    for version in ("1", "2"):
        app.agent(_summarize(version), name="summarize", version=version)
    return app


def _summarize(version: str) -> Callable[[Context, str], Awaitable[str]]:
    async def summarize(ctx: Context, topic: str) -> str:
        return (await ctx.llm(f"[{version}] Summarize {topic}.")).text

    return summarize


async def test_a_fork_runs_the_version_of_its_source(tmp_path: Path) -> None:
    """A worker hosting versions 1 and 2: a fork of a version-1 run is version 1 (the code
    that made the events it reuses), not the default 2."""
    async with local_runtime(versioned_app(), tmp_path) as rt:
        source = await rt.client.start_run("summarize", "kelp", version="1")
        await wait_until_ended(rt.client, source.run_id)
        fork = await rt.client.fork(source.run_id, at=1)
        await wait_until_ended(rt.client, fork.run_id)
        started = event_codec().decode((await read_journal(rt.log, fork.run_id))[0]).payload
        assert isinstance(started, RunStarted) and started.version == "1"
        assert started.fork is not None and started.fork.source == source.run_id
