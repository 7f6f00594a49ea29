"""``wakeline diff RUN_A RUN_B``: the first divergence of two runs, then each step that
differs (see :mod:`wakeline.diffing`)."""

from __future__ import annotations

import click
from rich.table import Table

from wakeline.cli import render
from wakeline.cli.common import Settings, run_async
from wakeline.diffing import RunDiff, Step, StepDiff, diff_runs
from wakeline.replay import read_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import Event


def register(main: click.Group) -> None:
    main.add_command(diff)


@click.command()
@click.argument("run_a")
@click.argument("run_b")
@click.pass_obj
def diff(settings: Settings, run_a: str, run_b: str) -> None:
    """Where RUN_B parts from RUN_A, then every step whose prompt, output, tokens or cost
    differ; exit 1 if the runs differ at all."""

    async def go() -> list[list[Event]]:
        codec = event_codec()
        async with settings.connect() as client:
            journals = []
            for run in (run_a, run_b):  # what the log holds now (a run may be in flight)
                raw = await read_journal(client.log, run, topics=settings.topics)
                journals.append([codec.decode(r) for r in raw])
        return journals

    a, b = run_async(go)
    for run, events in ((run_a, a), (run_b, b)):
        if not events:
            raise click.UsageError(f"unknown run {run}")
    result = diff_runs(a, b)
    _print(result)
    raise SystemExit(1 if result.steps else 0)


def _print(result: RunDiff) -> None:
    first = result.first_divergence
    if first is None:
        click.echo("same steps asked for" + ("; outputs differ" if result.steps else ""))
    else:
        where = ", ".join(
            f"{name} seq {step.seq}" for name, step in (("A", first.a), ("B", first.b)) if step
        )
        click.echo(f"first divergence: step {first.index + 1} ({where})")
    if result.steps:
        render.console().print(_table(result.steps))


def _table(pairs: tuple[StepDiff, ...]) -> Table:
    table = Table()
    for column in ("step", "kind", "what", "A", "B"):
        table.add_column(column)
    for pair in pairs:
        either = pair.a or pair.b
        kind = either.kind if either is not None else ""
        changed = pair.changed or {"step": (_present(pair.a), _present(pair.b))}
        for what, (left, right) in changed.items():
            table.add_row(str(pair.index + 1), kind, what, _cell(left), _cell(right))
        latency = (_latency(pair.a), _latency(pair.b))
        table.add_row("", "", "latency", *latency)
    return table


def _present(step: Step | None) -> str:
    return "none" if step is None else f"seq {step.seq} {step.kind}"


def _latency(step: Step | None) -> str:
    return "" if step is None or step.latency_ms is None else f"{step.latency_ms:.1f} ms"


def _cell(value: object) -> str:
    return render.safe(render.plain(value if value is not None else ""))[:80]
