"""Durable sessions: each turn a run ``S:k`` whose agent sees the earlier turns through
``ctx.session`` (journaled at its start), a ``sessions`` projection that lists the turns, and
the checks that keep one run per turn."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from backends import backend_params, runtime_for
from session_agents import make_app

from wakeline import jsonutil
from wakeline.actors.session_start import turn_journal
from wakeline.client import Client, RunError, RunHandle
from wakeline.core.sessions import HISTORY_STEP, SessionError
from wakeline.projections.views import Views
from wakeline.replay import replay_run
from wakeline.schemas.commands import CommandRejected, StartRun
from wakeline.schemas.events import GateOpened, RunStarted, Session, StepRequested
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.harness import local_runtime
from wakeline.testing.waits import wait_for_event

TURNS = ["hello, I am Ada", "what is a lemma?", "what is my name?"]


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    """The embedded log, or a Kafka broker (marked kafka and slow)."""
    return request


async def test_turn_three_sees_turns_one_and_two_and_replays_from_its_journal(
    backend: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with FakeLLMServer() as server:
        app = make_app(server.openai_base_url)
        async with (
            runtime_for(backend, app, tmp_path / "data", "sessions") as rt,
            Client(rt.log, topics=rt.topics, views_dir=tmp_path / "views") as client,
        ):
            outputs = []
            for text in TURNS:
                handle = await client.start_run("chat", text, session="s-1")
                outputs.append(await client.result(handle.run_id))
            row = await client.session("s-1")
            third = [e async for e in client.events("s-1:2")]
            nxt = RunStarted("chat", '"x"', session=Session("s-1", 3))  # read from the log
            from_log = await turn_journal(rt.log, rt.topics, "s-1:3", nxt, 0, "w")
            replayed = await replay_run(
                rt.log, make_app("http://127.0.0.1:9/v1"), "s-1:2", topics=rt.topics
            )
            views = Views(rt.log, tmp_path / "rebuilt", topics=rt.topics)
            await views.rebuild()
            rebuilt = views.session("s-1")
            views.close()
    requests = server.requests()
    assert len(requests) == 6  # two calls a turn, each sent once
    asked = requests[4].body["messages"]  # turn 3's first call: turns 1 and 2, then its own
    assert [m["content"] for m in asked] == [
        TURNS[0],
        outputs[0],
        TURNS[1],
        outputs[1],
        f"turn 2: {TURNS[2]}",
    ]
    assert third[1].payload == StepRequested(HISTORY_STEP)  # what it saw is in its journal
    seen, logged = (jsonutil.loads(j[2].payload.result)["turns"] for j in (third, from_log))
    assert [(t["input"], t["output"]) for t in logged] == list(zip(TURNS, outputs, strict=True))
    assert logged[:2] == seen  # the worker's store and the events topic agree
    assert replayed.identical and replayed.ended  # no provider, no other run read
    assert row is not None and row == rebuilt
    assert [(t.turn, t.run_id, t.status, t.input, t.output) for t in row.turns] == [
        (k, f"s-1:{k}", "completed", TURNS[k], outputs[k]) for k in range(3)
    ]
    assert row.next_turn == 3 and row.forked_from is None


async def gate_opened(client: Client, turn: RunHandle) -> None:
    """Once the turn's gate opened (its watch ignores a refusal of an earlier start)."""
    async with asyncio.timeout(10):
        async for update in client.watch_turn(turn):
            if update.event is not None and isinstance(update.event.payload, GateOpened):
                return
    raise AssertionError(f"turn {turn.run_id} ended without opening its gate")


async def test_a_turn_waits_for_the_one_before_and_a_taken_turn_is_refused(
    tmp_path: Path,
) -> None:
    async with (
        local_runtime(make_app("http://127.0.0.1:9/v1"), tmp_path / "data") as rt,
        Client(rt.log, views_dir=tmp_path / "views") as client,
    ):
        first = await client.start_run("gated", "one", session="s-2")
        await wait_for_event(client, first.run_id, "GateOpened")
        with pytest.raises(SessionError, match=r"turn 0 of session s-2 .* has not ended"):
            await client.start_run("gated", "two", session="s-2")
        # the worker checks too: a start sent past the client's check is refused
        early = StartRun("gated", '"two"', session=Session("s-2", 1))
        refused = await client._start_turn_run(early, "s-2:1")
        with pytest.raises(RunError, match=r"rejected: turn 0 \(s-2:0\) has not ended"):
            await client.turn_result(refused)
        # another start of the same turn (a second client chose it too) is refused
        payload = StartRun("gated", '"again"', session=Session("s-2", 0))
        lost = await client._start(payload, "s-2:0")
        with pytest.raises(RunError, match="rejected: the turn was taken by another start"):
            await client.turn_result(lost)
        async with asyncio.timeout(10):
            async for update in client.watch(first.run_id):
                note = update.notice.payload if update.notice is not None else None
                if isinstance(note, CommandRejected):
                    assert "turn 0 of session s-2 is taken (run s-2:0)" in note.reason
                    break
        await client.approve(first.run_id, "go")
        assert await client.turn_result(first) == "one (0 earlier)"  # the winner's own
        # the refused turn can be started once the one before has ended
        second = await client.start_run("gated", "two", session="s-2")
        assert second.run_id == "s-2:1"
        await gate_opened(client, second)  # not ended by the refusal of the start before
        await client.approve(second.run_id, "go")
        assert await client.turn_result(second) == "two (1 earlier)"
        # starts that do not name the next turn are refused, and the worker goes on
        for run_id, turn, problem in (
            ("s-2:2", 7, r"run s-2:1 is turn 1, not 6"),
            ("s-2:5", 0, r"run s-2:5 cannot be turn 0 of session s-2"),
            ("s-2:x", 2, r"a turn of session s-2 must be run s-2:<n>"),
        ):
            bad = StartRun("gated", '"z"', session=Session("s-2", turn))
            await client._start(bad, run_id)
            with pytest.raises(RunError, match=problem):
                await client.result(run_id)
        third = await client.start_run("gated", "three", session="s-2")
        await gate_opened(client, third)
        await client.approve(third.run_id, "go")
        assert (third.run_id, await client.turn_result(third)) == ("s-2:2", "three (2 earlier)")
        with pytest.raises(SessionError, match="turn 3 of session s-2 is run s-2:3"):
            await client.start_run("gated", "x", session="s-2", run_id="mine")
        with pytest.raises(SessionError, match="invalid session id"):
            await client.start_run("gated", "x", session="a/b")


async def test_a_run_that_is_not_a_turn_has_no_session(tmp_path: Path) -> None:
    async with local_runtime(make_app("http://127.0.0.1:9/v1"), tmp_path / "data") as rt:
        handle = await rt.client.start_run("chat", "x")
        with pytest.raises(RunError, match="is not a turn of a session"):
            await rt.client.result(handle.run_id)


async def test_a_forked_session_reuses_the_turns_before_its_fork_and_goes_on_live(
    tmp_path: Path,
) -> None:
    with FakeLLMServer() as server:
        app = make_app(server.openai_base_url)
        async with (
            local_runtime(app, tmp_path / "data") as rt,
            Client(rt.log, views_dir=tmp_path / "views") as client,
        ):
            outputs = []
            for text in TURNS:
                handle = await client.start_run("chat", text, session="s-3")
                outputs.append(await client.result(handle.run_id))
            before = len(server.requests())
            fork = await client.fork_session("s-3", at_turn=2, session="s-3b", model="gpt-4o")
            forked = await client.result(fork.run_id)
            after_fork = server.requests()[before:]
            more = await client.start_run("chat", "and now?", session="s-3b")
            await client.result(more.run_id)
            next_turn = server.requests()[before + 2].body["messages"]
            next_model = server.requests()[before + 2].model
            row, source = await client.session("s-3b"), await client.session("s-3")
            # a fork of a turn's run at a step replays its recorded history, and is no turn
            calls = [e async for e in client.events("s-3:1")]
            at = [e.seq for e in calls if type(e.payload).__name__ == "ModelCallRequested"][1]
            step_fork = await client.fork("s-3:1", at=at)
            await client.result(step_fork.run_id)
            with pytest.raises(SessionError, match="fork it at turn 1 to 3"):
                await client.fork_session("s-3", at_turn=4, input="x")
            with pytest.raises(SessionError, match="session s-3b exists already"):
                await client.fork_session("s-3", at_turn=1, session="s-3b")
            after = await client.session("s-3")
    assert fork.run_id == "s-3b:0" and before == 6
    assert len(after_fork) == 2 and {r.model for r in after_fork} == {"gpt-4o"}  # turn 2 only
    seen = [m["content"] for m in after_fork[0].body["messages"]]
    assert seen == [TURNS[0], outputs[0], TURNS[1], outputs[1], f"turn 2: {TURNS[2]}"]
    assert [m["content"] for m in next_turn] == [*seen[:-1], TURNS[2], forked, "turn 3: and now?"]
    assert next_model == "gpt-4o-mini"  # the override was the forked turn's only
    assert row is not None and row.forked_from == "s-3" and row.fork_turn == 2
    assert [t.run_id for t in row.turns] == ["s-3:0", "s-3:1", "s-3b:0", "s-3b:1"]
    assert row.turns[2].output == forked and row.turns[1].output == outputs[1]
    assert source == after and source is not None and len(source.turns) == 3
    assert [t.run_id for t in source.turns] == ["s-3:0", "s-3:1", "s-3:2"]


async def test_items_added_popped_and_cleared_carry_over_to_the_next_turns(
    tmp_path: Path,
) -> None:
    async with (
        local_runtime(make_app("http://127.0.0.1:9/v1"), tmp_path / "data") as rt,
        Client(rt.log, views_dir=tmp_path / "views") as client,
    ):
        seen = []
        for op in ("a", "pop", "b", "clear", "c"):
            handle = await client.start_run("notes", op, session="n")
            seen.append(await client.result(handle.run_id))
        replayed = await replay_run(rt.log, make_app("http://127.0.0.1:9/v1"), "n:2")
    a, b, c = ({"turn": k, "text": t} for k, t in ((0, "a"), (2, "b"), (4, "c")))
    assert seen == [
        [a, {"extra": "a"}],
        [a],
        [a, b, {"extra": "b"}],
        [],
        [c, {"extra": "c"}],
    ]
    assert replayed.identical and replayed.ended
