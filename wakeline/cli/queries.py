"""Commands over this machine's views and the topics: ls, show, costs, topics, projections."""

from __future__ import annotations

import click

from wakeline.cli import render
from wakeline.cli.common import Settings, query, run_async, with_views
from wakeline.projections.costs import DIMENSIONS
from wakeline.projections.rows import CostDimension, RunRow, StepRow, dump, is_run_status
from wakeline.projections.views import Views
from wakeline.runtime import DEFAULT_PARTITIONS


def register(main: click.Group) -> None:
    for command in (list_runs, show, costs, topics, projections):
        main.add_command(command)


@click.command("ls")
@click.option("--status", default=None)
@click.option("--agent", default=None)
@click.option("--tenant", default=None)
@click.option("--orphaned", is_flag=True, help="only runs no live worker hosts the version of")
@click.option("--limit", default=20, show_default=True)
@click.pass_obj
def list_runs(
    settings: Settings,
    status: str | None,
    agent: str | None,
    tenant: str | None,
    orphaned: bool,
    limit: int,
) -> None:
    """List runs, newest first (an open run no live worker hosts the version of is shown
    orphaned)."""

    async def ask(views: Views) -> tuple[RunRow, ...]:
        if status is not None and not is_run_status(status):
            return ()  # no run has it
        page = views.queries.list_runs(
            status=status, agent=agent, tenant=tenant, orphaned=orphaned or None, limit=limit
        )
        return page.items

    render.console().print(render.runs_table(with_views(settings, ask)))


@click.command()
@click.argument("run_id")
@click.pass_obj
def show(settings: Settings, run_id: str) -> None:
    """A run's timeline: each step with its tokens, cost and latency."""

    async def ask(views: Views) -> tuple[RunRow | None, list[StepRow]]:
        return views.queries.get_run(run_id), views.queries.steps(run_id)

    run, steps = with_views(settings, ask)
    if run is None:
        raise click.ClickException(f"unknown run {run_id}")
    out = render.console()
    out.print(render.steps_table(run, steps))
    if run.orphaned:
        out.print(
            f"[bold red]orphaned[/]: no live worker hosts version {render.safe(repr(run.version))}"
            f" of agent {render.safe(repr(run.agent))}; the run waits, untouched, for one"
        )
    out.print(
        f"status {render.safe(run.status)}  tokens {run.tokens.input} in / "
        f"{run.tokens.output} out{render.estimated_note(run)}  cost {render.run_cost(run)}"
    )
    if run.error is not None:
        out.print(f"[red]error: {render.safe(dump(run.error))}[/red]")


@click.command()
@click.option(
    "--by",
    "dimension",
    type=click.Choice(list(DIMENSIONS)),
    default="agent",
    show_default=True,
    help="sum the model calls by agent, tenant, model, UTC day, or agent / tenant and day",
)
@click.option(
    "--key",
    default=None,
    help="only the rows whose first name is KEY: an agent, tenant, provider or day",
)
@click.pass_obj
def costs(settings: Settings, dimension: CostDimension, key: str | None) -> None:
    """Model calls, tokens and cost of the completed calls, from this machine's views."""
    rows = query(settings, lambda client: client.costs(dimension, key))
    render.console().print(render.costs_table(dimension, rows))


@click.group()
def topics() -> None:
    """Topic administration."""


@topics.command("create")
@click.option("--partitions", default=DEFAULT_PARTITIONS, show_default=True)
@click.option("--replication", default=1, show_default=True)
@click.pass_obj
def topics_create(settings: Settings, partitions: int, replication: int) -> None:
    """Create wakeline's topics (existing ones are kept)."""

    async def go() -> None:
        async with settings.connect() as client:
            await client.create_topics(partitions=partitions, replication=replication)

    run_async(go)
    click.echo("topics ready")


@click.group()
def projections() -> None:
    """Projection maintenance."""


@projections.command("rebuild")
@click.pass_obj
def projections_rebuild(settings: Settings) -> None:
    """Throw away this machine's query projections and refold them from the log."""
    click.echo(f"refolded {with_views(settings, lambda views: views.rebuild())} records")
