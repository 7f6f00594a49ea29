"""How the CLI shows events, runs and steps (rich).

Everything a run carries (ids, agent and step names, inputs, outputs, model answers, errors) is
untrusted text: it goes through :func:`safe` before it reaches rich (markup escaped, control
characters removed) and through :func:`plain` before a plain ``click.echo``, so a model answer
with ``[/INST]``, a run id with ``[/]`` or an escape sequence that clears the screen prints as
text and changes nothing on the terminal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wakeline import jsonutil
from wakeline.projections.costs import DIMENSIONS
from wakeline.projections.rows import CostDimension, CostRow, RunRow, StepRow, Tokens
from wakeline.schemas.commands import Notice
from wakeline.schemas.deltas import Delta
from wakeline.schemas.events import (
    Event,
    ModelCallCompleted,
    ModelCallFailed,
    ModelCallRequested,
    ModelRouteFallback,
    RunCompleted,
    RunFailed,
    RunStarted,
    RunUpgraded,
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


_LINE_BREAKS = str.maketrans({"\n": " ", "\r": " ", "\t": " "})
_BIDI = "\u200e\u200f\u202a-\u202e\u2066-\u2069"
"""The bidirectional marks and overrides that make text display in another order than it
reads."""
_CONTROLS = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
"""C0 and C1 controls (ESC starts terminal escape sequences), DEL and the bidi overrides."""
_TEXT_CONTROLS = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_BIDI}]")
"""The same but for the line feed: a model's streamed text keeps its lines."""
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f{_BIDI}]")
"""What ``json.dumps`` leaves unescaped of them (it escapes C0 controls itself)."""


def plain(text: object) -> str:
    """``text`` on one line, without control characters: safe to write to a terminal."""
    return _CONTROLS.sub("", str(text).translate(_LINE_BREAKS))


def safe(text: object) -> str:
    """:func:`plain` text, escaped for rich markup: prints exactly as it reads."""
    return escape(plain(text))


class LiveText:
    """The text of streamed model calls as it arrives (``watch(deltas=True)``), after a
    ``↳ seq N:`` prefix, ended with a newline before the next line is printed.  A delta with
    index 0 starts the call's text again (a resumed worker sent the call again)."""

    def __init__(self, out: Console) -> None:
        self._out = out
        self._open: int | None = None  # seq of the call whose text is being printed

    def delta(self, delta: Delta) -> None:
        if self._open != delta.seq or delta.index == 0:
            self.end()
            self._out.print(f"[dim]     ↳ seq {delta.seq}:[/dim] ", end="")
            self._open = delta.seq
        text = _TEXT_CONTROLS.sub("", delta.text)  # a model's text keeps its line breaks
        self._out.print(text, end="", markup=False, highlight=False)

    def end(self) -> None:
        if self._open is not None:
            self._out.print()
            self._open = None


def json_text(value: object) -> str:
    """``value`` as indented JSON whose strings show control characters and bidi overrides as
    ``\\uXXXX`` escapes (valid JSON: such characters only occur inside strings)."""
    text = json.dumps(value, indent=2, ensure_ascii=False)  # escapes C0 controls itself
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _clip(text: str, limit: int = 80) -> str:
    text = plain(text)
    return safe(text if len(text) <= limit else text[: limit - 1] + "…")


def event_line(event: Event) -> str:
    p = event.payload
    detail = ""
    match p:
        case RunStarted(agent=a, input=i, version=v):
            detail = f"{safe(a)}{'@' + safe(v) if v else ''} {_clip(i)}"
        case RunUpgraded(from_version=old, to_version=new, checked_seq=seq):
            detail = f"{safe(old)} -> {safe(new)} (replayed up to seq {seq})"
        case ModelCallRequested(provider=prov, model=m, attempt=n, route=r):
            detail = f"{safe(prov)}/{safe(m)}" + (f" attempt {n}" if n > 1 else "")
            detail += f" (route {safe(r)})" if r else ""
        case ModelRouteFallback(route=r, provider=prov, model=m, reason=why, detail=d):
            detail = f"route {safe(r)} left {safe(prov)}/{safe(m)}: {safe(why)}, {_clip(d)}"
        case ModelCallCompleted(usage=u, cost_usd=c, latency_us=lat, message=msg):
            text = str(jsonutil.loads(msg).get("content") or "")
            estimated = "~" if u.estimated else ""  # no usage reported: wakeline estimated it
            detail = (
                f"{estimated}{u.input_tokens}→{u.output_tokens} tok  {money(c)}  "
                f"{lat / 1000:.1f} ms  "
                f"{_clip(repr(text), 60)}"
            )
        case ModelCallFailed(error_type=t, message=m, retriable=r):
            detail = f"{safe(t)}: {_clip(m)}" + (" (retriable)" if r else "")
        case ToolCallRequested(tool=t, args=a):
            detail = f"{safe(t)} {_clip(a)}"
        case ToolCallCompleted(result=r):
            detail = _clip(r)
        case StepRequested(name=n):
            detail = safe(n)
        case ValueRecorded(kind=k, value=v):
            detail = f"{safe(k.lower())} = {_clip(v)}"
        case TimerScheduled(duration_ms=ms, purpose=why):
            detail = f"{ms} ms ({safe(why)})"
        case RunCompleted(output=o):
            detail = _clip(o)
        case RunFailed(error_type=t, message=m):
            detail = f"{safe(t)}: {_clip(m, 200)}"
        case _:
            detail = ""
    return f"[dim]{event.seq:>4}[/dim] [bold]{event.type}[/bold] {detail}"


def notice_line(notice: Notice) -> str:
    return f"[bold red]notice[/bold red] {safe(notice.type)}: {_clip(str(notice.payload), 300)}"


def money(value: Decimal | str | None) -> str:
    if value is None or value == "":
        return "-"
    return f"${Decimal(value):.6f}"


def run_cost(run: RunRow) -> str:
    """A run's cost, saying when calls had no price: ``unpriced`` when none had one, else the
    priced sum ``+ N unpriced`` -- never a bare $0 for calls nobody priced."""
    if run.unpriced_calls == 0:
        return money(run.cost_usd)
    if run.unpriced_calls >= run.model_calls:
        return "unpriced"
    return f"{money(run.cost_usd)} + {run.unpriced_calls} unpriced"


def estimated_note(run: RunRow) -> str:
    n = run.estimated_calls
    return f" (estimated for {n} call{'s' if n != 1 else ''})" if n else ""


def _step_cost(step: StepRow) -> str:
    if step.cost_usd is None and step.kind == "model" and step.status == "completed":
        return "unpriced"
    return money(step.cost_usd)


def runs_table(runs: Sequence[RunRow]) -> Table:
    table = Table(title="runs")
    table.add_column("run", overflow="fold", min_width=32)
    for col in ("agent", "status", "calls", "tokens", "cost", "started"):
        table.add_column(col)
    for run in runs:
        table.add_row(
            safe(run.run_id),
            safe(agent_name(run)),
            status_cell(run),
            str(run.model_calls),
            _tokens(run.tokens, estimated=run.estimated_calls > 0),
            run_cost(run),
            _when(run.started_ms),
        )
    return table


def agent_name(run: RunRow) -> str:
    """``agent@version`` (the agent alone when it is unversioned)."""
    return f"{run.agent}@{run.version}" if run.version else run.agent


def status_cell(run: RunRow) -> str:
    cell = f"[{STATUS_STYLE.get(run.status, 'white')}]{safe(run.status)}[/]"
    return f"{cell} [bold red]orphaned[/]" if run.orphaned else cell


def steps_table(run: RunRow, steps: Sequence[StepRow]) -> Table:
    table = Table(title=f"run {safe(run.run_id)} ({safe(run.agent)}): {safe(run.status)}")
    for col in ("seq", "kind", "name", "status", "tokens in/out", "cost", "latency"):
        table.add_column(col)
    for step in steps:
        latency = step.latency_us
        table.add_row(
            str(step.seq),
            safe(step.kind),
            safe(step.name),
            safe(step.status),
            _tokens(step.usage, estimated=step.usage_estimated),
            _step_cost(step),
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
            *(safe(getattr(row, name)) or "(none)" for name in names),
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


def _tokens(usage: Tokens | None, *, estimated: bool = False) -> str:
    """``in/out``; ``~in/out`` when wakeline estimated (some of) them: no usage reported."""
    if usage is None:
        return "-"
    return f"{'~' if estimated else ''}{usage.input}/{usage.output}"


def console() -> Console:
    return Console(highlight=False)
