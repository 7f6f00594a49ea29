"""``wakeline run ... --session S`` runs the session's next turn, ``wakeline sessions show S``
lists the turns and ``wakeline sessions fork S --at-turn K`` starts a forked session; bad
session ids and forks are usage errors (exit 2)."""

from __future__ import annotations

from pathlib import Path

from test_cli import cli

AGENTS = Path(__file__).parent / "support" / "session_cli_agents.py"


def test_turns_of_a_session_from_the_cli(tmp_path: Path) -> None:
    for k, text in enumerate(["hi", "more"]):
        code, out = cli(tmp_path, "run", f"{AGENTS}:talk", "--input", f'"{text}"', "--session", "c")
        assert code == 0, out
        assert f"run c:{k}" in out and f'"{k} earlier: mock' in out, out
    code, out = cli(tmp_path, "sessions", "show", "c")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "session c: 2 turns"
    assert lines[1].startswith("turn 0  c:0  talk  completed  hi -> 0 earlier: ")
    assert lines[2].startswith("turn 1  c:1  talk  completed  more -> 1 earlier: ")

    code, out = cli(tmp_path, "sessions", "fork", "c", "--at-turn", "1", "--session", "d")
    assert code == 0 and "forked c at turn 1: run d:0" in out, out
    # no worker ran the fork yet, so the views show no session d: this start of its first
    # turn is the same run d:0, refused by the worker, and `run` does not claim its result
    code, out = cli(tmp_path, "run", f"{AGENTS}:talk", "--input", '"x"', "--session", "d")
    assert code == 1 and "run d:0 rejected: the turn was taken by another start" in out, out
    code, out = cli(tmp_path, "run", f"{AGENTS}:talk", "--input", '"y"', "--session", "d")
    assert code == 0 and "run d:1" in out and '"2 earlier: mock' in out, out
    code, out = cli(tmp_path, "sessions", "show", "d")
    assert code == 0 and "forked from c at turn 1" in out, out
    assert [line.split("  ")[1] for line in out.splitlines()[1:]] == ["c:0", "d:0", "d:1"]
    code, out = cli(tmp_path, "sessions", "fork", "c", "--at-turn", "9")
    assert code == 2 and "fork it at turn 1 to 2" in out, out
    code, out = cli(tmp_path, "sessions", "show", "no/such")
    assert code == 2 and "invalid session id" in out, out
    code, out = cli(tmp_path, "sessions", "show", "nope")
    assert code == 1 and "unknown session nope" in out, out
