"""What wakeline writes on disk (the embedded log, its WAL, the state slots with their RocksDB
journals and views) holds prompts and results: it is created readable by its owner only."""

from __future__ import annotations

import stat
from pathlib import Path

from cli_agents import app

from wakeline.testing import local_runtime


async def test_the_log_and_the_state_directories_are_private(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    async with local_runtime(app, data) as rt:
        await rt.client.result((await rt.client.start_run("chatty", 1)).run_id)
        modes = {p: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "fresh").rglob("*")}
    names = {p.name for p in modes}
    assert {"log.sqlite3", "log.sqlite3-wal"} <= names, names
    assert any(p.name == "CURRENT" for p in modes)  # a worker's RocksDB journal store
    loose = [
        f"{p.relative_to(tmp_path)} {oct(mode)}"
        for p, mode in modes.items()
        if (p.is_dir() or p.name.startswith("log.sqlite3")) and mode & 0o077
    ]
    assert loose == [], loose
