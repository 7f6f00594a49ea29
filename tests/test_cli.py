"""The CLI end to end: run, start + worker, ls, show, tail, resume, cancel, rebuild, costs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cli_agents import app as cli_app
from click.testing import CliRunner
from workers import LLM_URL_ENV

from wakeline.cli import render
from wakeline.cli.main import main
from wakeline.client import Client
from wakeline.projections.costs import utc_day
from wakeline.projections.rows import dump
from wakeline.runtime import open_log
from wakeline.schemas.events import GateOpened
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.harness import worker_running
from wakeline.testing.waits import wait_for_event, wait_until_ended

EXAMPLE = str(Path(__file__).parent.parent / "examples" / "research_agent.py")
AGENTS = str(Path(__file__).parent / "support" / "cli_agents.py")


def cli(data: Path, *args: str) -> tuple[int, str]:
    wide = CliRunner(env={"COLUMNS": "200"})  # rich crops tables to the terminal's width
    result = wide.invoke(main, ["--data", str(data), *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_run_streams_events_and_prints_the_result(tmp_path: Path) -> None:
    code, out = cli(tmp_path, "run", f"{EXAMPLE}:research", "--input", '{"topic": "kelp"}')
    assert code == 0, out
    assert "RunStarted" in out and "RunCompleted" in out and '"topic": "kelp"' in out
    run_id = re.search(r"run ([0-9a-f]{32})", out).group(1)  # type: ignore[union-attr]

    code, out = cli(tmp_path, "ls")
    assert code == 0 and run_id in out and "completed" in out
    code, out = cli(tmp_path, "show", run_id)
    assert code == 0 and "encyclopedia" in out and "mock-1" in out and "$" in out
    code, out = cli(tmp_path, "tail", run_id)
    assert code == 0 and out.count("ModelCallCompleted") == 4
    code, out = cli(tmp_path, "replay", run_id, EXAMPLE)
    assert code == 0 and "byte-identical" in out, out
    code, out = cli(tmp_path, "projections", "rebuild")
    assert code == 0 and "refolded" in out


def table_rows(out: str) -> list[list[str]]:
    """The body rows of the rich tables in ``out``, as lists of cell texts."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in out.splitlines()
        if line.startswith("│")
    ]


def run_rows(data: Path) -> dict[str, dict[str, Any]]:
    """Each agent's run row, read through a client of its own (the runs view)."""

    async def go() -> dict[str, dict[str, Any]]:
        log = await open_log(data=data)
        try:
            async with Client(log, views_dir=data / "client-views") as client:
                return {row.agent: dump(row) for row in (await client.list()).items}
        finally:
            await log.close()

    return asyncio.run(go())


def test_costs_and_a_shared_budget(tmp_path: Path) -> None:
    assert cli(tmp_path, "topics", "create")[0] == 0
    code, out = cli(tmp_path, "budget", "set", "--tenant", "acme", "--usd", "3")
    assert code == 0 and "tenant:acme: limit $3" in out
    code, out = cli(tmp_path, "run", f"{AGENTS}:chatty", "--input", "2", "--tenant", "acme")
    assert code == 0, out
    code, out = cli(tmp_path, "run", f"{EXAMPLE}:research", "--input", '{"topic": "kelp"}')
    assert code == 0, out
    runs = run_rows(tmp_path)
    cost = {agent: Decimal(row["cost_usd"]) for agent, row in runs.items()}
    assert set(cost) == {"chatty", "research"} and all(c > 0 for c in cost.values())
    total = cost["chatty"] + cost["research"]

    code, out = cli(tmp_path, "costs")  # by agent
    assert code == 0, out
    assert "costs by agent" in out
    assert sorted(table_rows(out)) == sorted(
        [
            agent,
            str(row["model_calls"]),
            "0",
            f"{row['tokens']['input']}/{row['tokens']['output']}",
            render.money(row["cost_usd"]),
        ]
        for agent, row in runs.items()
    )
    assert [runs["chatty"]["model_calls"], runs["research"]["model_calls"]] == [2, 4]
    assert f"2 rows, 6 model calls, total {render.money(total)}" in out

    code, out = cli(tmp_path, "costs", "--by", "day")
    assert code == 0, out
    days = {utc_day(row[f]) for row in runs.values() for f in ("started_ms", "ended_ms")}
    assert table_rows(out) and {cells[0] for cells in table_rows(out)} <= days
    assert f"6 model calls, total {render.money(total)}" in out
    code, out = cli(tmp_path, "costs", "--by", "tenant", "--key", "acme")
    assert code == 0, out
    assert [cells[0] for cells in table_rows(out)] == ["acme"]
    assert f"1 rows, 2 model calls, total {render.money(cost['chatty'])}" in out
    code, out = cli(tmp_path, "costs", "--by", "tenant", "--key", "")  # runs without a tenant
    assert [cells[0] for cells in table_rows(out)] == ["(none)"]
    assert f"1 rows, 4 model calls, total {render.money(cost['research'])}" in out
    code, out = cli(tmp_path, "costs", "--by", "model")
    assert table_rows(out)[0][:3] == ["mock", "mock-1", "6"]
    code, out = cli(tmp_path, "costs", "--by", "planet")
    assert code == 2 and "Invalid value for '--by'" in out

    # the tenant's shared budget: chatty's spend was reserved and settled on the ledger
    code, out = cli(tmp_path, "budget", "show", "--tenant", "acme")
    assert code == 0, out
    spent = re.search(r"^tenant:acme: limit \$3, spent \$(\S+), 0 reservations in flight", out)
    assert spent is not None, out
    assert Decimal(spent.group(1)) == cost["chatty"]


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    assert cli(tmp_path, "--log-level", "loud", "ls")[0] == 2
    assert cli(tmp_path, "run", f"{EXAMPLE}:nope", "--input", "{}")[0] == 2
    assert cli(tmp_path, "run", f"{EXAMPLE}:research", "--input", "{not json")[0] == 2
    code, out = cli(tmp_path, "show", "missing-run")
    assert code == 1 and "unknown run" in out


def test_failed_run_exits_1(tmp_path: Path) -> None:
    code, out = cli(tmp_path, "run", f"{EXAMPLE}:research", "--input", '{"angles": 2}')
    assert code == 1 and "InvalidInput" in out


def test_start_then_a_separate_worker_process_runs_it(tmp_path: Path) -> None:
    code, out = cli(tmp_path, "start", "research", "--input", '{"topic": "reefs"}')
    assert code == 0
    run_id = out.strip()
    env = {**os.environ, "WAKELINE_DATA": str(tmp_path)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "wakeline.cli", "--log-level", "info", "worker", EXAMPLE],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        code, out = cli(tmp_path, "tail", run_id)
        assert code == 0 and "RunCompleted" in out
    finally:
        worker.send_signal(signal.SIGTERM)
        _, logged = worker.communicate(timeout=20)
    assert worker.returncode == 0, logged
    assert re.search(r"wakeline\.actors\.worker INFO \S+ assigned \[0, 1, 2, 3\]", logged), logged
    assert "partition 0: open, 0 runs resumed from the log" in logged, logged
    code, out = cli(tmp_path, "cancel", run_id)
    assert code == 0 and "cancel requested" in out


async def test_run_interrupted_stops_its_worker_and_the_run_goes_on_elsewhere(
    tmp_path: Path,
) -> None:
    """SIGINT to ``wakeline run`` while its run waits on a person: the command's worker leaves,
    the command exits 130, and a worker started later finishes the run from the log."""
    env = {**os.environ, "WAKELINE_DATA": str(tmp_path)}
    run = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "wakeline.cli", "run", f"{AGENTS}:gated", "--input", "7"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    async with await Client.open(data=tmp_path) as client:
        assert run.stdout is not None
        line = (await asyncio.wait_for(run.stdout.readline(), 30)).decode()
        run_id = re.search(r"run (\S+) on partition", line).group(1)  # type: ignore[union-attr]
        await wait_for_event(client, run_id, GateOpened)
        run.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(run.communicate(), 30)
        assert run.returncode == 130, err.decode()
        assert f"run {run_id} goes on when a worker serves it" in err.decode()

        await client.approve(run_id, "pay")
        async with worker_running(cli_app, client.log, tmp_path / "w"):
            ended = await wait_until_ended(client, run_id)
    assert ended.type == "RunCompleted"


def test_runs_whose_calls_have_no_price_say_unpriced(tmp_path: Path) -> None:
    agents = str(Path(__file__).parent / "support" / "unpriced_agents.py")
    for agent, run_id in (("unpriced", "u1"), ("mixed", "u2")):
        code, out = cli(tmp_path, "run", f"{agents}:{agent}", "--run-id", run_id)
        assert code == 0, out
    rows = {row[0]: row for row in table_rows(cli(tmp_path, "ls")[1]) if row[0]}
    assert rows["u1"][5] == "unpriced"
    assert re.fullmatch(r"\$0\.0000\d\d \+ 1 unpriced", rows["u2"][5]), rows["u2"]
    code, out = cli(tmp_path, "show", "u1")
    assert code == 0 and "cost unpriced" in out and "$0.000000" not in out, out
    assert [row[5] for row in table_rows(out)] == ["unpriced"]


def test_run_shows_the_live_text_of_a_streamed_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply's pieces are printed as they stream (before the call's result line), and
    together they are the journaled text."""
    agents = str(Path(__file__).parent / "support" / "stream_agents.py")
    with FakeLLMServer() as server:
        server.chunk_delay_s = 0.05  # the pieces arrive over a while, like a real model's
        monkeypatch.setenv(LLM_URL_ENV, server.openai_base_url)
        code, out = cli(tmp_path, "run", f"{agents}:storyteller", "--input", '"kelp"')
    assert code == 0, out
    live = out.split("↳ seq 1: ", 1)[1].split("\n", 1)[0]
    result = json.loads(out.rsplit("\n", 2)[-2] if out.endswith("\n") else out)
    assert live == result and len(live) > 20, out
    assert out.index("↳ seq 1:") < out.index("ModelCallCompleted"), out
