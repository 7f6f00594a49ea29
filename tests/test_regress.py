"""Regression bundles: ``wakeline regress record`` writes recorded runs; ``regress check``
(and the pytest plugin) replays them against the current code with no provider reachable,
failing on a changed prompt at the call it changed and passing on an unrelated change."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import cli

from wakeline.regress import SUFFIX

AGENTS = str(Path(__file__).parent / "support" / "regress_agents.py")
EDITED = str(Path(__file__).parent / "support" / "regress_agents_edited.py")


@pytest.fixture
def bundles(tmp_path: Path) -> Path:
    """A bundle of one run of the recorded code, written by ``regress record``."""
    code, out = cli(tmp_path / "data", "run", f"{AGENTS}:summarize", "--input", '"kelp"')
    assert code == 0, out
    run_id = re.search(r"run ([0-9a-f]{32})", out).group(1)  # type: ignore[union-attr]
    code, out = cli(tmp_path / "data", "regress", "record", run_id, "-o", str(tmp_path / "b"))
    assert code == 0 and f"{run_id}{SUFFIX}" in out, out
    return tmp_path / "b"


def test_check_passes_on_an_unrelated_change_and_fails_on_a_changed_prompt(
    tmp_path: Path, bundles: Path
) -> None:
    empty = tmp_path / "nowhere"  # no log: the check needs nothing but the bundle
    code, out = cli(empty, "regress", "check", str(bundles), "--app", f"{AGENTS}:app")
    assert code == 0 and "1 passed, 0 diverged" in out, out
    unrelated = f"{AGENTS}:unrelated_change()"
    code, out = cli(empty, "regress", "check", str(bundles), "--app", unrelated)
    assert code == 0 and "1 passed" in out, out

    code, out = cli(empty, "regress", "check", str(bundles), "--app", f"{AGENTS}:changed_prompt()")
    assert code == 1 and "0 passed, 1 diverged" in out, out
    # the first model call (seq 1) asks something else: its request digest differs
    assert "DIVERGED" in out and "at seq 1, field payload.request_digest" in out, out
    assert not empty.exists()


def test_a_damaged_bundle_is_a_usage_error(tmp_path: Path, bundles: Path) -> None:
    [path] = bundles.iterdir()
    value = json.loads(path.read_text())
    value["records"][1] = "not base64!"
    path.write_text(json.dumps(value))
    code, out = cli(tmp_path, "regress", "check", str(bundles), "--app", f"{AGENTS}:app")
    assert code == 2 and "malformed bundle" in out, out


def test_the_pytest_plugin_runs_each_bundle_as_a_test(bundles: Path) -> None:
    def pytest_on(target: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pytest", "-p", "wakeline.testing.regress_plugin"]
        command += ["--wakeline-app", target, "-q", "-p", "no:cacheprovider", str(bundles)]
        return subprocess.run(command, capture_output=True, text=True, cwd=bundles, timeout=120)

    passed = pytest_on(f"{AGENTS}:unrelated_change()")
    assert passed.returncode == 0 and "1 passed" in passed.stdout, passed.stdout
    failed = pytest_on(f"{AGENTS}:changed_prompt()")
    assert failed.returncode == 1 and "1 failed" in failed.stdout, failed.stdout
    assert "DIVERGED" in failed.stdout and "request_digest" in failed.stdout


def test_diff_names_the_first_divergent_step_and_what_changed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runs = []
    for target in (f"{AGENTS}:summarize", f"{EDITED}:summarize"):
        code, out = cli(data, "run", target, "--input", '"kelp"')
        assert code == 0, out
        runs.append(re.search(r"run ([0-9a-f]{32})", out).group(1))  # type: ignore[union-attr]
    code, out = cli(data, "diff", runs[0], runs[0])
    assert code == 0 and "same steps asked for" in out, out
    code, out = cli(data, "diff", *runs)
    assert code == 1, out
    assert "first divergence: step 1 (A seq 1, B seq 1)" in out, out
    assert "Summarize kelp in one line." in out and "friendly line" in out  # the prompts
    assert "output" in out and "latency" in out
