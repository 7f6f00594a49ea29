"""``wakeline fork RUN --at SEQ --prompt-override FILE``: the fork sends no request for a step
before SEQ (by the fake server's log), every request it sends from SEQ on carries the new system
prompt (in place of the request's system messages, or first), its answers follow the prompt,
it replays byte-identically, and ``wakeline diff`` names SEQ; a bad FILE is exit 2."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from test_cli import cli

from wakeline import App, Context, jsonutil
from wakeline.client import Client, RunError
from wakeline.core.history import expand_requests
from wakeline.core.model import ModelRequest, ModelResponse
from wakeline.diffing import diff_runs
from wakeline.forking import MAX_PROMPT_CHARS, ForkError
from wakeline.providers.openai_compat import OpenAICompatProvider
from wakeline.replay import replay_run
from wakeline.schemas.commands import StartRun
from wakeline.schemas.events import Event, Fork, ModelCallRequested
from wakeline.schemas.usage import Usage
from wakeline.testing.fake_llm import FakeLLMServer, RequestRecord
from wakeline.testing.harness import local_runtime

SYSTEM = "You are a careful essayist."
OVERRIDE = "You are a pirate.\nAnswer in rhymes."


def make_app(base_url: str) -> App:
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    app.provider("openai", OpenAICompatProvider(base_url=base_url, api_key="test-key"))

    @app.agent
    async def essayist(ctx: Context, topic: str) -> list[str]:
        answers: list[str] = []
        for step in ("outline", "draft", "polish"):
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"{step} an essay on {topic}"},
                {"role": "system", "content": "Keep it short."},
            ]
            if step == "polish":  # a request with no system message: the override comes first
                messages = [messages[1]]
            answers.append((await ctx.llm(messages, max_tokens=32)).text)
        return answers

    @app.agent
    async def careful(ctx: Context, topic: str) -> list[str]:
        system = {"role": "system", "content": SYSTEM}
        plan = await ctx.llm([system, {"role": "user", "content": f"plan {topic}"}])
        await ctx.approval("go")  # the run is unloaded here and resumed by the decision
        essay = await ctx.llm([system, {"role": "user", "content": f"write {plan.text}"}])
        return [plan.text, essay.text]

    return app


def calls(events: list[Event]) -> list[int]:
    return [e.seq for e in events if isinstance(e.payload, ModelCallRequested)]


def systems(record: RequestRecord) -> list[tuple[int, str]]:
    messages = record.body["messages"]
    return [(i, m["content"]) for i, m in enumerate(messages) if m["role"] == "system"]


def voice(prompt: str) -> str:
    """How the fake model's answer shows the system prompt it was given."""
    return f" as {hashlib.sha256(prompt.encode()).hexdigest()[:8]}"


async def test_a_fork_with_a_prompt_override_sends_the_new_prompt_from_its_seq_on(
    tmp_path: Path,
) -> None:
    with FakeLLMServer() as server:
        app = make_app(server.openai_base_url)
        async with local_runtime(app, tmp_path / "data") as rt:
            client = rt.client
            source = await client.start_run("essayist", "kelp")
            original = await client.result(source.run_id)
            source_events = [e async for e in client.events(source.run_id)]
            at = calls(source_events)[1]  # redo from the second call
            sent_before = server.requests()

            fork = await client.fork(source.run_id, at=at, prompt=OVERRIDE)
            forked = await client.result(fork.run_id)
            fork_events = [e async for e in client.events(fork.run_id)]
            new_requests = server.requests()[len(sent_before) :]
            replayed = await replay_run(rt.log, make_app("http://127.0.0.1:9/v1"), fork.run_id)

    assert len(sent_before) == 3 and len(new_requests) == 2  # nothing before seq `at` again
    assert sent_before[0].digest not in {r.digest for r in new_requests}
    assert systems(sent_before[1]) == [(0, SYSTEM), (2, "Keep it short.")]
    assert systems(new_requests[0]) == [(0, OVERRIDE)]  # in place of the first, others dropped
    assert [m["role"] for m in new_requests[0].body["messages"]] == ["system", "user"]
    assert systems(new_requests[1]) == [(0, OVERRIDE)]  # none before: put first
    # the journaled requests are what was sent: the override is in the fork's journal
    journaled = expand_requests(fork_events)
    assert [journaled[seq]["messages"][0]["content"] for seq in calls(fork_events)] == [
        SYSTEM,
        OVERRIDE,
        OVERRIDE,
    ]
    assert [jsonutil.digest(jsonutil.dumps(journaled[r])) for r in calls(fork_events)[1:]] == [
        e.payload.request_digest
        for e in fork_events[at:]
        if isinstance(e.payload, ModelCallRequested)
    ]
    # the answers follow the prompt: the reused one as recorded, the others in the new voice
    assert forked[0] == original[0] and original[0].endswith(voice(SYSTEM + "\nKeep it short."))
    assert [a.endswith(voice(OVERRIDE)) for a in forked] == [False, True, True]
    assert forked[1:] != original[1:]
    assert replayed.identical and replayed.ended
    first = diff_runs(source_events, fork_events).first_divergence
    assert first is not None and first.a is not None and first.b is not None
    assert first.a.seq == first.b.seq == at  # diff names `at`
    assert first.b.system == OVERRIDE and first.a.system == SYSTEM + "\nKeep it short."


async def test_the_cli_forks_with_a_prompt_file_and_diff_names_the_fork_point(
    tmp_path: Path,
) -> None:
    data, prompt = tmp_path / "data", tmp_path / "prompt.txt"
    prompt.write_text(OVERRIDE, encoding="utf-8")
    with FakeLLMServer() as server:
        async with local_runtime(make_app(server.openai_base_url), data) as rt:
            source = await rt.client.start_run("essayist", "kelp")
            await rt.client.result(source.run_id)
            at = calls([e async for e in rt.client.events(source.run_id)])[2]
            before = server.received
            args = ("fork", source.run_id, "--at", str(at), "--prompt-override", str(prompt))
            code, out = await asyncio.to_thread(cli, data, *args)
            assert code == 0, out
            fork = re.findall(r"run ([0-9a-f]{32})", out)[-1]
            forked = await rt.client.result(fork)
            code, out = await asyncio.to_thread(cli, data, "diff", source.run_id, fork)
    assert server.received == before + 1  # the last call only
    assert forked[2].endswith(voice(OVERRIDE))
    assert code == 1 and f"first divergence: step 3 (A seq {at}, B seq {at})" in out, out
    assert "system" in out


async def test_a_resumed_fork_sends_the_override_again(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        app = make_app(server.openai_base_url)
        async with local_runtime(app, tmp_path / "data") as rt:
            source = await rt.client.start_run("careful", "kelp")
            await rt.wait_unloaded(source.run_id)
            await rt.client.approve(source.run_id, "go")
            await rt.client.result(source.run_id)
            before = server.received
            fork = await rt.client.fork(source.run_id, at=1, prompt=OVERRIDE)
            await rt.wait_unloaded(fork.run_id)  # at the gate: the decision loads it again
            await rt.client.approve(fork.run_id, "go")
            forked = await rt.client.result(fork.run_id)
            replayed = await replay_run(rt.log, make_app("http://127.0.0.1:9/v1"), fork.run_id)
    sent = server.requests()[before:]
    assert [systems(r) for r in sent] == [[(0, OVERRIDE)], [(0, OVERRIDE)]]
    assert [a.endswith(voice(OVERRIDE)) for a in forked] == [True, True]
    assert replayed.identical and replayed.ended


class Framework:
    """A framework's own model (``ctx.llm(..., via=...)``): it sends its own messages, so a
    fork's prompt is not put in what it is given."""

    name = "framework"

    def __init__(self) -> None:
        self.given: list[ModelRequest] = []

    async def complete(self, request: ModelRequest, *, on_delta: object = None) -> ModelResponse:
        self.given.append(request)
        return ModelResponse(text=f"framework answer {len(self.given)}", usage=Usage(3, 2))


async def test_routed_calls_get_the_prompt_and_framework_calls_keep_their_messages(
    tmp_path: Path,
) -> None:
    framework = Framework()
    with FakeLLMServer() as server:
        app = make_app(server.openai_base_url)
        app.route("smart", ["openai:gpt-4o-mini", "openai:gpt-4o"])

        @app.agent
        async def mixed(ctx: Context, topic: str) -> list[str]:
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": topic}]
            first = await ctx.llm(messages, route="smart")
            second = await ctx.llm(messages, via=framework)
            third = await ctx.llm(messages, route="smart")
            return [first.text, second.text, third.text]

        async with local_runtime(app, tmp_path / "data") as rt:
            source = await rt.client.start_run("mixed", "kelp")
            await rt.client.result(source.run_id)
            before = server.received
            fork = await rt.client.fork(source.run_id, at=1, prompt=OVERRIDE, model="gpt-4o")
            forked = await rt.client.result(fork.run_id)
            events = [e async for e in rt.client.events(fork.run_id)]
    sent = server.requests()[before:]
    assert [systems(r) for r in sent] == [[(0, OVERRIDE)], [(0, OVERRIDE)]]  # both routed
    assert [r.model for r in sent] == ["gpt-4o-mini", "gpt-4o-mini"]  # the route's first target
    assert forked[0].endswith(voice(OVERRIDE)) and forked[2].endswith(voice(OVERRIDE))
    assert [m["content"] for m in framework.given[-1].messages] == [SYSTEM, "kelp"]
    framework_seq = calls(events)[1]
    assert expand_requests(events)[framework_seq]["messages"][0]["content"] == SYSTEM


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "No such file or directory"),
        (b"", "is empty"),
        (b" \n\t", "is empty"),
        (b"\xff\xfe not text", "is not UTF-8 text"),
        ("directory", "Is a directory"),
    ],
)
def test_the_cli_refuses_a_prompt_file_it_cannot_use(
    tmp_path: Path, content: bytes | str | None, problem: str
) -> None:
    agents = Path(__file__).parent / "support" / "regress_agents.py"
    code, out = cli(tmp_path, "run", f"{agents}:summarize", "--input", '"kelp"')
    assert code == 0, out
    source = re.findall(r"run ([0-9a-f]{32})", out)[-1]
    path = tmp_path / "prompt.txt"
    if content == "directory":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    code, out = cli(tmp_path, "fork", source, "--at", "1", "--prompt-override", str(path))
    assert code == 2 and "--prompt-override" in out and problem in out, out
    assert "forked" not in out


async def test_an_oversized_prompt_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        async with local_runtime(make_app(server.openai_base_url), tmp_path / "data") as rt:
            source = await rt.client.start_run("essayist", "kelp")
            await rt.client.result(source.run_id)
            with pytest.raises(ForkError, match=f"more than {MAX_PROMPT_CHARS}"):
                await rt.client.fork(source.run_id, at=1, prompt="x" * (MAX_PROMPT_CHARS + 1))


@pytest.mark.parametrize(
    ("fork", "problem"),
    [
        (Fork("0" * 32, 1), "the source run has no journal"),
        (Fork("", 99), "has no seq 99"),  # "" stands for the real source below
    ],
)
async def test_a_worker_refuses_a_fork_it_cannot_start_and_keeps_running(
    tmp_path: Path, fork: Fork, problem: str
) -> None:
    """A start command that names a bad fork (the client checks up front; this one is
    published as is) is refused with a ``CommandRejected`` notice, and the worker goes on."""
    with FakeLLMServer() as server:
        async with local_runtime(make_app(server.openai_base_url), tmp_path / "data") as rt:
            client: Client = rt.client
            source = await client.start_run("essayist", "kelp")
            original = await client.result(source.run_id)
            if not fork.source:
                fork = Fork(source.run_id, fork.seq)
            command = StartRun("essayist", '"kelp"', "", None, fork)
            bad = await client._start(command, None)  # past the client's check
            with pytest.raises(RunError, match=problem) as refused:
                await client.result(bad.run_id)
            assert refused.value.status == "rejected"
            again = await client.start_run("essayist", "kelp")
            assert await client.result(again.run_id) == original  # the worker keeps running
