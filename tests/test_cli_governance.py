"""CLI for people in the loop: approve, budget raise, audit verify (with a tampered log)."""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from wakeline.cli.main import main
from wakeline.client import Client
from wakeline.schemas.events import GateOpened, RunCompleted
from wakeline.testing import wait_for_event
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.partitioner import partition_for

AGENTS = str(Path(__file__).parent / "support" / "cli_agents.py")


def cli(data: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--data", str(data), *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture()
def worker(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "WAKELINE_DATA": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "wakeline.cli", "worker", AGENTS], env=env)
    yield proc
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)


def wait_status(data: Path, run_id: str, status: str, kind: type[Any]) -> str:
    """``wakeline show`` of the run once the log shows its event of ``kind`` (which gives the
    run ``status``), followed as it is appended."""

    async def follow() -> None:
        log = await EmbeddedLog.open(data)
        try:
            await wait_for_event(Client(log), run_id, kind)
        finally:
            await log.close()

    asyncio.run(follow())
    _, out = cli(data, "show", run_id)
    assert f"status {status}" in out, out
    return out


def test_approve_and_budget_raise_from_the_cli(
    tmp_path: Path, worker: subprocess.Popen[bytes]
) -> None:
    _, out = cli(tmp_path, "start", "gated", "--input", "5")
    gated = out.strip()
    wait_status(tmp_path, gated, "suspended", GateOpened)
    assert cli(tmp_path, "approve", gated, "pay", "--reason", "fine")[0] == 0
    code, out = cli(tmp_path, "tail", gated)
    # the approval names who gave it: the operating-system user (by uid) at this host
    me = f"{pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()}"
    assert code == 0 and f"approved by {me}" in out, out

    _, out = cli(tmp_path, "start", "chatty", "--input", "3")
    chatty = out.strip()
    wait_status(tmp_path, chatty, "completed", RunCompleted)  # no budget: runs straight through
    code, _ = cli(tmp_path, "budget", "raise", chatty, "--metric", "usd", "--limit", "1")
    assert code == 0  # a raise for a run that waits on nothing is rejected by the worker


def test_audit_verify_detects_a_changed_event_and_names_it(
    tmp_path: Path, worker: subprocess.Popen[bytes]
) -> None:
    _, out = cli(tmp_path, "start", "chatty", "--input", "2")
    run_id = out.strip()
    wait_status(
        tmp_path, run_id, "completed", RunCompleted
    )  # the views fold (and audit) the journal
    code, out = cli(tmp_path, "audit", "verify", run_id)
    assert code == 0 and "ok: 6 events" in out
    code, out = cli(tmp_path, "audit", "show", run_id)
    assert code == 0 and "ModelCallCompleted" in out

    db = sqlite3.connect(tmp_path / "log.sqlite3")
    partition = partition_for(run_id.encode(), 4)
    (pid,) = db.execute(
        "SELECT id FROM partitions WHERE topic = 'wakeline.events' AND partition = ?", (partition,)
    ).fetchone()
    rows = db.execute(
        "SELECT id, value FROM records WHERE id >= ? AND id < ? AND key = ? ORDER BY id",
        (pid << 40, (pid + 1) << 40, run_id.encode()),
    ).fetchall()
    row_id, value = rows[2]  # the first ModelCallCompleted
    db.execute(
        "UPDATE records SET value = ? WHERE id = ?", (value.replace(b"mock", b"m0ck"), row_id)
    )
    db.commit()
    db.close()

    code, out = cli(tmp_path, "audit", "verify", run_id)
    assert code == 1
    assert f"TAMPERED: seq 2 (ModelCallCompleted) at offset {row_id - (pid << 40)}" in out

    # rebuilding the projections refolds the audit view from the tampered bytes; the chain the
    # log carries (each event holds the hash of the run's previous record) still names seq 2
    code, out = cli(tmp_path, "projections", "rebuild")
    assert code == 0, out
    code, out = cli(tmp_path, "audit", "verify", run_id)
    assert code == 1, out
    assert f"TAMPERED: seq 2 (ModelCallCompleted) at offset {row_id - (pid << 40)}" in out
    assert "changed in the log: seq 3 carries another hash of it" in out
