"""The README's CLI synopsis parses: each line, with its optional parts filled in, is a command
line the CLI accepts (checked with ``--help``, so nothing runs)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from wakeline.cli.main import main

README = Path(__file__).parent.parent / "README.md"


def synopsis() -> list[str]:
    text = README.read_text()
    block = text.split("## CLI", 1)[1].split("```", 2)[1]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def first_form(line: str) -> list[str]:
    """The line's first alternative of each ``a|b``, optional ``[...]`` parts included."""
    line = re.sub(r"\[([^\]]*)\]", r"\1", line.split(" | ", 1)[0])
    return [word.split("|", 1)[0] for word in shlex.split(line)][1:]  # without "wakeline"


@pytest.mark.parametrize("line", synopsis())
def test_each_synopsis_line_is_accepted(line: str) -> None:
    args = first_form(line)
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, f"{line!r} -> {args}: {result.output}"
