"""The adapter examples run as the README says: the CLI, the embedded log, no key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent.parent / "examples"

pytestmark = pytest.mark.slow


EXPECTED = {
    "pydantic_ai_agent.py": ["ToolCallCompleted", "RunCompleted", "shipped yesterday"],
    "openai_agents_agent.py": [
        "ModelCallRequested openai/gpt-4o-mini",
        "ToolCallCompleted",
        "RunCompleted",
        "Good news: order 42 shipped yesterday.",
    ],
    "langchain_agent.py": ["ToolCallCompleted", '"Good news: order 42 shipped yesterday."'],
}
"""What each example's ``wakeline run`` prints, at least (each asks for a tool, then answers)."""


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_the_example_runs_from_the_cli(tmp_path: Path, example: str) -> None:
    target = f"{EXAMPLES / example}:support"
    args = [sys.executable, "-m", "wakeline.cli", "run", target, "--input", '"where is 42?"']
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for expected in EXPECTED[example]:
        assert expected in done.stdout, (expected, done.stdout)
    assert done.stdout.count("ModelCallCompleted") == 2  # the tool call, then the answer
