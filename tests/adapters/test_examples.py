"""The adapter examples run as the README says: the CLI, the embedded log, no key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent.parent / "examples"

pytestmark = pytest.mark.slow


def test_the_pydantic_ai_example_runs_from_the_cli(tmp_path: Path) -> None:
    target = f"{EXAMPLES / 'pydantic_ai_agent.py'}:support"
    args = [sys.executable, "-m", "wakeline.cli", "run", target, "--input", '"where is 42?"']
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ToolCallCompleted" in done.stdout and "RunCompleted" in done.stdout
    assert "shipped yesterday" in done.stdout


def test_the_openai_agents_example_runs_from_the_cli(tmp_path: Path) -> None:
    target = f"{EXAMPLES / 'openai_agents_agent.py'}:support"
    args = [sys.executable, "-m", "wakeline.cli", "run", target, "--input", '"where is 42?"']
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ModelCallRequested openai/gpt-4o-mini" in done.stdout
    assert "ToolCallCompleted" in done.stdout and "RunCompleted" in done.stdout
    assert "Good news: order 42 shipped yesterday." in done.stdout


def test_the_langchain_example_runs_from_the_cli(tmp_path: Path) -> None:
    target = f"{EXAMPLES / 'langchain_agent.py'}:support"
    args = [sys.executable, "-m", "wakeline.cli", "run", target, "--input", '"where is 42?"']
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ModelCallCompleted") == 2 and "ToolCallCompleted" in done.stdout
    assert '"Good news: order 42 shipped yesterday."' in done.stdout
