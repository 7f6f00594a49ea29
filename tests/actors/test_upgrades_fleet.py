"""``wakeline runs upgrade AGENT --to VERSION``: two in-flight runs of version 1, one that the
new code (an edited prompt) would replay exactly (it waits before the model call) and one that
it would not (its model call is journaled with the old prompt).  ``--dry-run`` names exactly
the diverging run and its seq; the real upgrade moves the other one, which a worker of
version 2 then completes with the new prompt, while the diverged run completes on version 1."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from version_fleet import (
    ALL,
    PARTITIONS,
    VersionWorker,
    asked,
    at_gate,
    cli_process,
    finish,
    opened,  # noqa: F401  (the fixture ``fleet``)
    run_id_on,
    version_of,
)

from wakeline.api import KeyRing, create_app
from wakeline.api.serve import serving
from wakeline.client import Client
from wakeline.runtime import load_target
from wakeline.schemas.commands import CommandRejected
from wakeline.schemas.events import ModelCallRequested, RunUpgraded
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.waits import wait_for_event
from wakeline.topics.partitioner import partition_for

OPERATOR_SECRET = "o" * 40
OPERATOR = {"Authorization": f"Bearer {OPERATOR_SECRET}"}
V2_APP = str(Path(__file__).parent.parent / "support" / "versioned_agents.py") + ":v2()"


async def refusal(client: Client, run_id: str, command_id: str) -> str:
    async with asyncio.timeout(30):
        async for update in client.watch(run_id):
            said = update.notice.payload if update.notice is not None else None
            if isinstance(said, CommandRejected) and said.command_id == command_id:
                return said.reason
    raise AssertionError("the watch ended without the refusal")


async def over_http(client: Client, tmp_path: Path, body: dict[str, Any]) -> list[Any]:
    """``POST /v1/agents/summarize/upgrade`` to an API serving the version-2 app (and the
    refusals of a bad version and of an API with no app)."""
    keys = KeyRing.from_specs([f"ops:operator:{OPERATOR_SECRET}"])
    app, _ = load_target(V2_APP)
    api = create_app(client.log, state_dir=tmp_path / "api", keys=keys, app=app, poll_s=0.05)
    bare = create_app(client.log, state_dir=tmp_path / "api-bare", keys=keys, poll_s=0.05)
    path = "/v1/agents/summarize/upgrade"
    async with api.router.lifespan_context(api), serving(api) as base:
        http = httpx.AsyncClient(base_url=base, headers=OPERATOR)
        async with http:
            wrong = await http.post(path, json={"to_version": "3"})
            assert wrong.status_code == 422 and "no version '3'" in wrong.text, wrong.text
            answer = await http.post(path, json=body)
            assert answer.status_code == 200, answer.text
    async with bare.router.lifespan_context(bare), serving(bare) as base:
        http = httpx.AsyncClient(base_url=base, headers=OPERATOR)
        async with http:
            assert (await http.post(path, json=body)).status_code == 409
    runs: list[Any] = answer.json()["runs"]
    return runs


async def test_dry_run_names_the_diverging_run_and_the_upgrade_moves_the_other(
    fleet: tuple[Path, Client, FakeLLMServer], tmp_path: Path
) -> None:
    data, client, server = fleet
    old = await VersionWorker.spawn(data, server, "v1()", "old")
    new: VersionWorker | None = None
    try:
        await old.owns(ALL)
        # two partitions: the assignment moves whole partitions (docs/versioning.md)
        movable = (await client.start_run("summarize", "kelp", run_id=run_id_on({0}))).run_id
        stuck = (await client.start_run("summarize", "otters", run_id=run_id_on({1}))).run_id
        await at_gate(client, movable, "start")
        await client.approve(stuck, "start")
        called = await wait_for_event(client, stuck, ModelCallRequested)
        await at_gate(client, stuck, "finish")

        code, out = await cli_process(
            data, "runs", "upgrade", "summarize", "--to", "2", "--app", V2_APP, "--dry-run"
        )
        assert code == 1, out
        diverged = [line for line in out.splitlines() if line.startswith("DIVERGED")]
        assert diverged == [f"DIVERGED {stuck} ('1' -> '2') at seq {called.seq}"], out
        assert "Summarize otters." in out and "Summarize otters in five words." in out, out
        assert f"ok       {movable} ('1' -> '2'), replayed up to seq 1" in out, out
        assert "1 would move, 1 diverged (dry run)" in out, out
        assert (await client.get(movable)).version == "1"  # type: ignore[union-attr]
        api_dry = await over_http(client, tmp_path, {"to_version": "2", "dry_run": True})
        assert [(r["run_id"], r["ok"]) for r in api_dry] == sorted(
            [(movable, True), (stuck, False)]
        )
        assert [r["divergence"]["seq"] for r in api_dry if not r["ok"]] == [called.seq]

        stale = await client.upgrade_run(movable, "2", 0)  # checked before it moved on
        assert "moved on since the check" in await refusal(client, movable, stale)

        new = await VersionWorker.spawn(data, server, "v2()", "new")
        pinned = {partition_for(r.encode(), PARTITIONS) for r in (movable, stuck)}
        await new.owns(ALL - pinned)
        code, out = await cli_process(
            data, "runs", "upgrade", "summarize", "--to", "2", "--app", V2_APP
        )
        assert code == 1 and "1 upgraded, 1 diverged, 0 refused" in out, out
        assert f"{movable} ('1' -> '2'), replayed up to seq 1: upgraded" in out, out

        await new.owns(ALL - {partition_for(stuck.encode(), PARTITIONS)})
        events = await finish(client, movable)
        upgraded = [e for e in events if isinstance(e.payload, RunUpgraded)]
        assert [(e.seq, e.writer) for e in upgraded] == [(2, old.worker_id)]
        assert upgraded[0].payload == RunUpgraded("1", "2", 1, upgraded[0].payload.by)
        assert version_of(events) == "1"  # started as 1; driven as 2 from the upgrade on
        assert asked(server, "kelp") == [("new", "Summarize kelp in five words.")]
        assert {e.writer for e in events[3:]} == {new.worker_id}
        assert (await client.get(movable)).version == "2"  # type: ignore[union-attr]

        events = await finish(client, stuck)
        assert asked(server, "otters") == [("old", "Summarize otters.")]
        assert not any(isinstance(e.payload, RunUpgraded) for e in events)
    finally:
        for worker in (old, new):
            if worker is not None:
                await worker.stop()
