"""Printing the results table and writing ``benchmarks/results/latest.json``."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.registry import Profile, Row

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def format_value(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def print_table(rows: Sequence[Row], title: str, console: Console | None = None) -> None:
    table = Table(title=title)
    table.add_column("benchmark", style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("notes", style="dim")
    previous = ""
    for row in rows:
        shown = row.benchmark if row.benchmark != previous else ""
        table.add_row(shown, row.metric, format_value(row.value), row.unit, row.note)
        previous = row.benchmark
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or captured: do not wrap at 80 columns
            console = Console(width=160)
    console.print(table)


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "git": _git_head(),
    }


def _git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.stdout.strip()


def write_json(
    rows: Sequence[Row], profile: Profile, durations: dict[str, float], path: Path | None = None
) -> Path:
    """Write the figures (and how they were produced) as JSON; returns the path."""
    target = path or RESULTS_DIR / "latest.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": profile.name,
        "sizes": {k: v for k, v in asdict(profile).items() if k != "name"},
        "environment": environment(),
        "durations_s": durations,
        "rows": [row.to_json() for row in rows],
    }
    target.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return target
