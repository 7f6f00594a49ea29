"""How the CLI shows events, runs and steps (rich)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from wakeline import jsonutil
from wakeline.projections.costs import DIMENSIONS
from wakeline.schemas.commands import Notice
from wakeline.schemas.events import (
    Event,
    ModelCallCompleted,
    ModelCallFailed,
    ModelCallRequested,
    RunCompleted,
    RunFailed,
    RunStarted,
    StepRequested,
    TimerScheduled,
    ToolCallCompleted,
    ToolCallRequested,
    ValueRecorded,
)

STATUS_STYLE = {
    "completed": "green",
    "running": "cyan",
    "waiting": "blue",
    "failed": "red",
    "cancelled": "yellow",
    "drifted": "magenta",
    "rejected": "red",
}


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_line(event: Event) -> str:
    p = event.payload
    detail = ""
    match p:
        case RunStarted(agent=a, input=i):
            detail = f"{a} {_clip(i)}"
        case ModelCallRequested(provider=prov, model=m, attempt=n):
            detail = f"{prov}/{m}" + (f" attempt {n}" if n > 1 else "")
        case ModelCallCompleted(usage=u, cost_usd=c, latency_us=lat, message=msg):
            text = str(jsonutil.loads(msg).get("content") or "")
            detail = (
                f"{u.input_tokens}→{u.output_tokens} tok  {money(c)}  {lat / 1000:.1f} ms  "
                f"{_clip(text, 60)!r}"
            )
        case ModelCallFailed(error_type=t, message=m, retriable=r):
            detail = f"{t}: {_clip(m)}" + (" (retriable)" if r else "")
        case ToolCallRequested(tool=t, args=a):
            detail = f"{t} {_clip(a)}"
        case ToolCallCompleted(result=r):
            detail = _clip(r)
        case StepRequested(name=n):
            detail = n
        case ValueRecorded(kind=k, value=v):
            detail = f"{k.lower()} = {v}"
        case TimerScheduled(duration_ms=ms, purpose=why):
            detail = f"{ms} ms ({why})"
        case RunCompleted(output=o):
            detail = _clip(o)
        case RunFailed(error_type=t, message=m):
            detail = f"{t}: {_clip(m, 200)}"
        case _:
            detail = ""
    return f"[dim]{event.seq:>4}[/dim] [bold]{event.type}[/bold] {detail}"


def notice_line(notice: Notice) -> str:
    return f"[bold red]notice[/bold red] {notice.type}: {notice.payload}"


def money(value: Decimal | str | None) -> str:
    if value is None or value == "":
        return "-"
    return f"${Decimal(value):.6f}"


def runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(title="runs")
    table.add_column("run", overflow="fold", min_width=32)
    for col in ("agent", "status", "calls", "tokens", "cost", "started"):
        table.add_column(col)
    for run in runs:
        tokens = run.get("tokens") or {}
        status = str(run.get("status", ""))
        table.add_row(
            str(run.get("run_id")),
            str(run.get("agent", "")),
            f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]",
            str(run.get("model_calls", 0)),
            f"{tokens.get('input', 0)}/{tokens.get('output', 0)}",
            money(run.get("cost_usd")),
            _when(run.get("started_ms")),
        )
    return table


def steps_table(run: dict[str, Any], steps: list[dict[str, Any]]) -> Table:
    table = Table(title=f"run {run.get('run_id')} ({run.get('agent')}): {run.get('status')}")
    for col in ("seq", "kind", "name", "status", "tokens in/out", "cost", "latency"):
        table.add_column(col)
    for step in steps:
        latency = step.get("latency_us")
        table.add_row(
            str(step.get("seq")),
            str(step.get("kind")),
            str(step.get("name")),
            str(step.get("status")),
            _tokens(step),
            money(step.get("cost_usd")),
            f"{latency / 1000:.1f} ms" if isinstance(latency, int | float) else "-",
        )
    return table


def costs_table(dimension: str, rows: list[dict[str, Any]]) -> Table:
    """Rows of the costs projection; the caption sums them (exact decimals)."""
    names = DIMENSIONS[dimension]
    table = Table(title=f"costs by {dimension}")
    for col in names:
        table.add_column(col)
    for col in ("calls", "unpriced", "tokens in/out", "cost"):
        table.add_column(col, justify="right")
    total, calls = Decimal(0), 0
    for row in rows:
        tokens = row.get("tokens") or {}
        total += Decimal(str(row.get("cost_usd", "0")))
        calls += int(row.get("model_calls", 0))
        table.add_row(
            *(str(row.get(name, "")) or "(none)" for name in names),
            str(row.get("model_calls", 0)),
            str(row.get("unpriced_calls", 0)),
            f"{tokens.get('input', 0)}/{tokens.get('output', 0)}",
            money(row.get("cost_usd")),
        )
    table.caption = f"{len(rows)} rows, {calls} model calls, total {money(total)}"
    return table


def _when(ms: Any) -> str:
    if not isinstance(ms, int):
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _tokens(step: dict[str, Any]) -> str:
    usage = step.get("usage")
    if not isinstance(usage, dict):
        return "-"
    return f"{usage.get('input', 0)}/{usage.get('output', 0)}"


def console() -> Console:
    return Console(highlight=False)
