"""The ``wakeline`` command: a thin layer over :class:`wakeline.Client` and friends.

Exit codes: 0 success, 1 the run failed / replay diverged, 2 usage or input errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal

import click

from wakeline.actors.worker import DEFAULT_GROUP, Worker
from wakeline.cli import governance as cli_governance
from wakeline.cli import render
from wakeline.cli import serve as cli_serve
from wakeline.cli.common import (
    Settings,
    json_input,
    open_views,
    query,
    run_async,
    send,
    target_app,
)
from wakeline.client import RunError
from wakeline.projections.costs import DIMENSIONS
from wakeline.projections.rows import CostDimension, RunRow, StepRow, dump, is_run_status
from wakeline.replay import replay_run
from wakeline.runtime import (
    DEFAULT_PARTITIONS,
    StateDir,
)

LOG_LEVELS = ("debug", "info", "warning", "error")
CHATTY = ("aiokafka", "httpx", "httpcore")
"""Libraries whose info lines drown wakeline's own: shown from ``warning`` unless ``debug``."""


def configure_logging(level: str) -> None:
    number = logging.getLevelName(level.upper())
    logging.basicConfig(
        level=number, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    for name in CHATTY:
        logging.getLogger(name).setLevel(number if number <= logging.DEBUG else logging.WARNING)


@click.group()
@click.option("--data", envvar="WAKELINE_DATA", default=None, help="embedded log directory")
@click.option("--kafka", envvar="WAKELINE_KAFKA", default=None, help="Kafka bootstrap servers")
@click.option(
    "--topic-prefix",
    envvar="WAKELINE_TOPIC_PREFIX",
    default=None,
    help="topics named PREFIX.commands, PREFIX.events, ... (several deployments on one cluster)",
)
@click.option(
    "--log-level",
    envvar="WAKELINE_LOG_LEVEL",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="warning",
    show_default=True,
    help="logs to stderr; info shows a worker's assignments, revokes and resumed runs",
)
@click.pass_context
def main(
    ctx: click.Context,
    data: str | None,
    kafka: str | None,
    topic_prefix: str | None,
    log_level: str,
) -> None:
    """Durable execution for LLM agents."""
    configure_logging(log_level)
    ctx.obj = Settings(data, kafka, topic_prefix)


@main.command()
@click.argument("target")
@click.option("--input", "input_", default="null", help="the agent's input as JSON")
@click.option("--run-id", default=None)
@click.option("--tenant", default="")
@click.pass_obj
def run(settings: Settings, target: str, input_: str, run_id: str | None, tenant: str) -> None:
    """Run MODULE:AGENT in this process, streaming its events, and print the result."""
    app, agent = target_app(target)
    if agent is None:
        raise click.UsageError("name the agent: MODULE:AGENT")
    value = json_input(input_)
    out = render.console()

    async def go() -> int:
        log = await settings.log()
        await settings.ensure_topics(log)
        slot = StateDir(settings.data / "state")
        worker = Worker(app, log, state_dir=slot.path, topics=settings.topics)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            client = settings.client(log, issuer="cli")
            handle = await client.start_run(agent, value, run_id=run_id, tenant=tenant)
            out.print(f"run [bold]{handle.run_id}[/bold] on partition {handle.partition}")
            async for update in client.watch(handle.run_id, from_offset=handle.from_offset):
                if update.event is not None:
                    out.print(render.event_line(update.event))
                elif update.notice is not None:
                    out.print(render.notice_line(update.notice))
            try:
                result = await client.result(handle.run_id, from_offset=handle.from_offset)
            except RunError as exc:
                out.print(f"[red]{exc}[/red]")
                return 1
            out.print_json(json.dumps(result))
            return 0
        finally:
            stop.set()
            await task
            slot.release()
            await log.close()

    raise SystemExit(run_async(go))


@main.command()
@click.argument("agent")
@click.option("--input", "input_", default="null")
@click.option("--run-id", default=None)
@click.option("--tenant", default="")
@click.pass_obj
def start(settings: Settings, agent: str, input_: str, run_id: str | None, tenant: str) -> None:
    """Publish a start command for AGENT (a worker runs it); print the run id."""
    value = json_input(input_)
    agent = agent.rpartition(":")[2]

    async def go() -> str:
        log = await settings.log()
        try:
            await settings.ensure_topics(log)
            handle = await settings.client(log, issuer="cli").start_run(
                agent, value, run_id=run_id, tenant=tenant
            )
            return handle.run_id
        finally:
            await log.close()

    click.echo(run_async(go))


@main.command()
@click.argument("target")
@click.option("--session-timeout", default=10.0, show_default=True)
@click.option("--partitions", default=DEFAULT_PARTITIONS, show_default=True)
@click.option("--group", envvar="WAKELINE_GROUP", default=DEFAULT_GROUP, show_default=True)
@click.option(
    "--membership",
    type=click.Choice(["static", "dynamic"]),
    default="static",
    show_default=True,
    help="static: the state slot's stable instance id, so a worker restarted within the session"
    " timeout gets its partitions back without a rebalance",
)
@click.pass_obj
def worker(
    settings: Settings,
    target: str,
    session_timeout: float,
    partitions: int,
    group: str,
    membership: str,
) -> None:
    """Run a worker for the app in TARGET until SIGTERM or Ctrl-C."""
    app, _ = target_app(target)

    async def go() -> None:
        log = await settings.log()
        await settings.ensure_topics(log, partitions=partitions)
        slot = StateDir(settings.data / "state")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            w = Worker(
                app,
                log,
                state_dir=slot.path,
                topics=settings.topics,
                group=group,
                session_timeout_s=session_timeout,
                instance_id=slot.instance_id if membership == "static" else None,
            )
            click.echo(f"worker {w.worker_id} started", err=True)
            await w.run(stop)
        finally:
            slot.release()
            await log.close()

    run_async(go)


@main.command()
@click.argument("run_id")
@click.pass_obj
def tail(settings: Settings, run_id: str) -> None:
    """Follow a run's events until it ends."""
    out = render.console()

    async def go() -> None:
        log = await settings.log()
        try:
            async for update in settings.client(log).watch(run_id):
                if update.event is not None:
                    out.print(render.event_line(update.event))
                elif update.notice is not None:
                    out.print(render.notice_line(update.notice))
        finally:
            await log.close()

    run_async(go)


@main.command()
@click.argument("run_id")
@click.pass_obj
def resume(settings: Settings, run_id: str) -> None:
    """Ask the workers to resume a run from its journal (e.g. after fixing drifted code)."""
    send(settings, lambda c: c.resume(run_id))
    click.echo(f"resume requested for {run_id}")


@main.command()
@click.argument("run_id")
@click.option("--reason", default="cancelled from the CLI")
@click.pass_obj
def cancel(settings: Settings, run_id: str, reason: str) -> None:
    """Cancel a run."""
    send(settings, lambda c: c.cancel(run_id, reason))
    click.echo(f"cancel requested for {run_id}")


@main.command()
@click.argument("run_id")
@click.argument("target")
@click.pass_obj
def replay(settings: Settings, run_id: str, target: str) -> None:
    """Re-drive RUN_ID with the code in TARGET, no provider reachable; compare bytes."""
    app, _ = target_app(target)

    async def go() -> int:
        log = await settings.log()
        try:
            report = await replay_run(log, app, run_id, topics=settings.topics)
        except LookupError as exc:
            raise click.UsageError(str(exc)) from exc
        finally:
            await log.close()
        if report.identical:
            state = "ended" if report.ended else "still open"
            click.echo(
                f"byte-identical: {report.checked} produced events of {report.events} "
                f"match the log (run {state})"
            )
            return 0
        d = report.divergence
        assert d is not None
        click.echo(f"DIVERGED at seq {d.seq}, field {d.field}")
        click.echo(f"  recorded: {d.recorded}")
        click.echo(f"  replayed: {d.replayed}")
        return 1

    raise SystemExit(run_async(go))


@main.group()
def topics() -> None:
    """Topic administration."""


@topics.command("create")
@click.option("--partitions", default=DEFAULT_PARTITIONS, show_default=True)
@click.option("--replication", default=1, show_default=True)
@click.pass_obj
def topics_create(settings: Settings, partitions: int, replication: int) -> None:
    """Create wakeline's topics (existing ones are kept)."""

    async def go() -> None:
        log = await settings.log()
        try:
            await settings.ensure_topics(log, partitions=partitions, replication=replication)
        finally:
            await log.close()

    run_async(go)
    click.echo("topics ready")


@main.command("ls")
@click.option("--status", default=None)
@click.option("--agent", default=None)
@click.option("--tenant", default=None)
@click.option("--limit", default=20, show_default=True)
@click.pass_obj
def list_runs(
    settings: Settings, status: str | None, agent: str | None, tenant: str | None, limit: int
) -> None:
    """List runs, newest first."""

    async def go() -> tuple[RunRow, ...]:
        if status is not None and not is_run_status(status):
            return ()  # no run has it
        log, views, slot = await open_views(settings)
        try:
            return views.queries.list_runs(
                status=status, agent=agent, tenant=tenant, limit=limit
            ).items
        finally:
            views.close()
            slot.release()
            await log.close()

    render.console().print(render.runs_table(run_async(go)))


@main.command()
@click.argument("run_id")
@click.pass_obj
def show(settings: Settings, run_id: str) -> None:
    """A run's timeline: each step with its tokens, cost and latency."""

    async def go() -> tuple[RunRow | None, list[StepRow]]:
        log, views, slot = await open_views(settings)
        try:
            return views.queries.get_run(run_id), views.queries.steps(run_id)
        finally:
            views.close()
            slot.release()
            await log.close()

    run, steps = run_async(go)
    if run is None:
        raise click.ClickException(f"unknown run {run_id}")
    out = render.console()
    out.print(render.steps_table(run, steps))
    out.print(
        f"status {run.status}  tokens {run.tokens.input} in / "
        f"{run.tokens.output} out  cost {render.money(run.cost_usd)}"
    )
    if run.error is not None:
        out.print(f"[red]error: {dump(run.error)}[/red]")


@main.command()
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


@main.group()
def projections() -> None:
    """Projection maintenance."""


@projections.command("rebuild")
@click.pass_obj
def projections_rebuild(settings: Settings) -> None:
    """Throw away this machine's query projections and refold them from the log."""

    async def go() -> int:
        log, views, slot = await open_views(settings)
        try:
            return await views.rebuild()
        finally:
            views.close()
            slot.release()
            await log.close()

    click.echo(f"refolded {run_async(go)} records")


cli_governance.register(main)
cli_serve.register(main)
