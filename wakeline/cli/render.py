"""How the CLI shows events, runs and steps (rich)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from rich.console import Console
from rich.table import Table

from wakeline import jsonutil
from wakeline.projections.costs import DIMENSIONS
from wakeline.projections.rows import CostDimension, CostRow, RunRow, StepRow, Tokens
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


def runs_table(runs: Sequence[RunRow]) -> Table:
    table = Table(title="runs")
    table.add_column("run", overflow="fold", min_width=32)
    for col in ("agent", "status", "calls", "tokens", "cost", "started"):
        table.add_column(col)
    for run in runs:
        table.add_row(
            run.run_id,
            run.agent,
            f"[{STATUS_STYLE.get(run.status, 'white')}]{run.status}[/]",
            str(run.model_calls),
            _tokens(run.tokens),
            money(run.cost_usd),
            _when(run.started_ms),
        )
    return table


def steps_table(run: RunRow, steps: Sequence[StepRow]) -> Table:
    table = Table(title=f"run {run.run_id} ({run.agent}): {run.status}")
    for col in ("seq", "kind", "name", "status", "tokens in/out", "cost", "latency"):
        table.add_column(col)
    for step in steps:
        latency = step.latency_us
        table.add_row(
            str(step.seq),
            step.kind,
            step.name,
            step.status,
            _tokens(step.usage),
            money(step.cost_usd),
            "-" if latency is None else f"{latency / 1000:.1f} ms",
        )
    return table


def costs_table(dimension: CostDimension, rows: Sequence[CostRow]) -> Table:
    """Rows of the costs projection; the caption sums them (exact decimals)."""
    names = DIMENSIONS[dimension]
    table = Table(title=f"costs by {dimension}")
    for col in names:
        table.add_column(col)
    for col in ("calls", "unpriced", "tokens in/out", "cost"):
        table.add_column(col, justify="right")
    total, calls = Decimal(0), 0
    for row in rows:
        total += Decimal(row.cost_usd)
        calls += row.model_calls
        table.add_row(
            *(getattr(row, name) or "(none)" for name in names),
            str(row.model_calls),
            str(row.unpriced_calls),
            _tokens(row.tokens),
            money(row.cost_usd),
        )
    table.caption = f"{len(rows)} rows, {calls} model calls, total {money(total)}"
    return table


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _tokens(usage: Tokens | None) -> str:
    return "-" if usage is None else f"{usage.input}/{usage.output}"


def console() -> Console:
    return Console(highlight=False)
