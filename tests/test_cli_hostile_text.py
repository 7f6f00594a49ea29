"""Run data is untrusted text: the CLI prints it as text, never as markup or terminal control.

Every field the CLI shows (agent, model, tool, step and gate names; input, model answer, tool
result, output, error) carries rich markup, brackets, a hyperlink, escape sequences (clear
screen, window title, OSC 8 link) and a bidi override; each command must exit normally, show
the markup literally and let no control character through."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from hostile_agents import HOSTILE

from wakeline.cli.main import main

AGENTS = str(Path(__file__).parent / "support" / "hostile_agents.py")
AGENT = f"agent{HOSTILE}"
VISIBLE = ("[/INST]", "[a, b]", "[link=https://evil.example]click[/link]", "[/]", "[bold]x")
CONTROLS = ("\x1b", "\x07", "\u202e", "\x9b")


def cli(data: Path, *args: str) -> tuple[int, str]:
    wide = {"COLUMNS": "2000"}  # rich wraps table cells to the terminal's width
    result = CliRunner(env=wide).invoke(main, ["--data", str(data), *args], catch_exceptions=False)
    return result.exit_code, result.output


def assert_plain(out: str, *, visible: tuple[str, ...] = VISIBLE) -> None:
    leaked = [c for c in CONTROLS if c in out]
    assert not leaked, f"control characters reached the terminal: {leaked!r}\n{out}"
    for text in visible:
        assert text in out, f"{text!r} was lost:\n{out}"


def test_every_command_prints_hostile_run_data_as_text(tmp_path: Path) -> None:
    code, out = cli(tmp_path, "run", f"{AGENTS}:fails", "--input", json.dumps(HOSTILE))
    assert code == 1, out  # the run failed with the hostile message; the CLI did not crash
    assert_plain(out)
    code, out = cli(tmp_path, "run", f"{AGENTS}:{AGENT}", "--input", json.dumps(HOSTILE))
    assert code == 0, out
    assert_plain(out)
    code, out = cli(tmp_path, "run", f"{AGENTS}:{AGENT}", "--input", '"x"', "--run-id", "h2")
    assert code == 0, out

    for args in (("ls",), ("show", "h2"), ("tail", "h2"), ("costs",), ("audit", "show", "h2")):
        code, out = cli(tmp_path, *args)
        assert code == 0, (args, out)
        assert_plain(out, visible=() if args[0] in ("costs", "audit") else ("[/INST]",))
