"""The CLI end to end: run, start + worker, ls, show, tail, resume, cancel, rebuild."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from wakeline.cli import main

EXAMPLE = str(Path(__file__).parent.parent / "examples" / "research_agent.py")


def cli(data: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--data", str(data), *args], catch_exceptions=False)
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
    assert code == 0 and "byte-identical" in out
    code, out = cli(tmp_path, "projections", "rebuild")
    assert code == 0 and "refolded" in out


def test_bad_usage_exits_2(tmp_path: Path) -> None:
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
        [sys.executable, "-m", "wakeline.cli", "worker", EXAMPLE],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        code, out = cli(tmp_path, "tail", run_id)
        assert code == 0 and "RunCompleted" in out
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
    code, out = cli(tmp_path, "cancel", run_id)
    assert code == 0 and "cancel requested" in out
