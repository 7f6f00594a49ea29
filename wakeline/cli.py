"""The ``wakeline`` command: a thin layer over :class:`wakeline.Client` and friends.

Exit codes: 0 success, 1 the run failed / replay diverged, 2 usage or input errors.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from wakeline import cli_render as render
from wakeline.actors.worker import Worker
from wakeline.client import Client, RunError
from wakeline.projections.views import Views
from wakeline.replay import replay_run
from wakeline.runtime import (
    DEFAULT_PARTITIONS,
    StateDir,
    TargetError,
    data_dir,
    ensure_topics,
    load_target,
    open_log,
)
from wakeline.topics.port import Log, LogError, UnknownTopicError

T = TypeVar("T")


class Settings:
    def __init__(self, data: str | None, kafka: str | None) -> None:
        self.data = data_dir(data)
        self.kafka = kafka

    async def log(self) -> Log:
        return await open_log(data=self.data, kafka=self.kafka)


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await coro_fn()

    try:
        return asyncio.run(wrapper())
    except UnknownTopicError as exc:
        raise click.ClickException(f"{exc}; run `wakeline topics create`") from exc
    except LogError as exc:
        raise click.ClickException(f"log error: {exc}") from exc


def _json_input(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"--input is not valid JSON: {exc}") from exc


def _target(target: str) -> tuple[Any, str | None]:
    try:
        return load_target(target)
    except TargetError as exc:
        raise click.UsageError(str(exc)) from exc


@click.group()
@click.option("--data", envvar="WAKELINE_DATA", default=None, help="embedded log directory")
@click.option("--kafka", envvar="WAKELINE_KAFKA", default=None, help="Kafka bootstrap servers")
@click.pass_context
def main(ctx: click.Context, data: str | None, kafka: str | None) -> None:
    """Durable execution for LLM agents."""
    ctx.obj = Settings(data, kafka)


@main.command()
@click.argument("target")
@click.option("--input", "input_", default="null", help="the agent's input as JSON")
@click.option("--run-id", default=None)
@click.option("--tenant", default="")
@click.pass_obj
def run(settings: Settings, target: str, input_: str, run_id: str | None, tenant: str) -> None:
    """Run MODULE:AGENT in this process, streaming its events, and print the result."""
    app, agent = _target(target)
    if agent is None:
        raise click.UsageError("name the agent: MODULE:AGENT")
    value = _json_input(input_)
    out = render.console()

    async def go() -> int:
        log = await settings.log()
        await ensure_topics(log)
        slot = StateDir(settings.data / "state")
        worker = Worker(app, log, state_dir=slot.path)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            client = Client(log, issuer="cli")
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

    raise SystemExit(_run(go))


@main.command()
@click.argument("agent")
@click.option("--input", "input_", default="null")
@click.option("--run-id", default=None)
@click.option("--tenant", default="")
@click.pass_obj
def start(settings: Settings, agent: str, input_: str, run_id: str | None, tenant: str) -> None:
    """Publish a start command for AGENT (a worker runs it); print the run id."""
    value = _json_input(input_)
    agent = agent.rpartition(":")[2]

    async def go() -> str:
        log = await settings.log()
        try:
            await ensure_topics(log)
            handle = await Client(log, issuer="cli").start_run(
                agent, value, run_id=run_id, tenant=tenant
            )
            return handle.run_id
        finally:
            await log.close()

    click.echo(_run(go))


@main.command()
@click.argument("target")
@click.option("--session-timeout", default=10.0, show_default=True)
@click.option("--partitions", default=DEFAULT_PARTITIONS, show_default=True)
@click.pass_obj
def worker(settings: Settings, target: str, session_timeout: float, partitions: int) -> None:
    """Run a worker for the app in TARGET until SIGTERM or Ctrl-C."""
    app, _ = _target(target)

    async def go() -> None:
        log = await settings.log()
        await ensure_topics(log, partitions=partitions)
        slot = StateDir(settings.data / "state")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            w = Worker(app, log, state_dir=slot.path, session_timeout_s=session_timeout)
            click.echo(f"worker {w.worker_id} started", err=True)
            await w.run(stop)
        finally:
            slot.release()
            await log.close()

    _run(go)


@main.command()
@click.argument("run_id")
@click.pass_obj
def tail(settings: Settings, run_id: str) -> None:
    """Follow a run's events until it ends."""
    out = render.console()

    async def go() -> None:
        log = await settings.log()
        try:
            async for update in Client(log).watch(run_id):
                if update.event is not None:
                    out.print(render.event_line(update.event))
                elif update.notice is not None:
                    out.print(render.notice_line(update.notice))
        finally:
            await log.close()

    _run(go)


def _send(settings: Settings, action: Callable[[Client], Awaitable[None]]) -> None:
    async def go() -> None:
        log = await settings.log()
        try:
            await action(Client(log, issuer="cli"))
        finally:
            await log.close()

    _run(go)


@main.command()
@click.argument("run_id")
@click.pass_obj
def resume(settings: Settings, run_id: str) -> None:
    """Ask the workers to resume a run from its journal (e.g. after fixing drifted code)."""
    _send(settings, lambda c: c.resume(run_id))
    click.echo(f"resume requested for {run_id}")


@main.command()
@click.argument("run_id")
@click.option("--reason", default="cancelled from the CLI")
@click.pass_obj
def cancel(settings: Settings, run_id: str, reason: str) -> None:
    """Cancel a run."""
    _send(settings, lambda c: c.cancel(run_id, reason))
    click.echo(f"cancel requested for {run_id}")


@main.command()
@click.argument("run_id")
@click.argument("target")
@click.pass_obj
def replay(settings: Settings, run_id: str, target: str) -> None:
    """Re-drive RUN_ID with the code in TARGET, no provider reachable; compare bytes."""
    app, _ = _target(target)

    async def go() -> int:
        log = await settings.log()
        try:
            report = await replay_run(log, app, run_id)
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

    raise SystemExit(_run(go))


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
            await ensure_topics(log, partitions=partitions, replication=replication)
        finally:
            await log.close()

    _run(go)
    click.echo("topics ready")


async def _views(settings: Settings) -> tuple[Log, Views, StateDir]:
    log = await settings.log()
    if settings.kafka is None:
        await ensure_topics(log)  # an empty embedded data dir is simply a log with no runs
    slot = StateDir(settings.data / "state", prefix="views")
    views = Views(log, slot.path)
    await views.refresh()
    return log, views, slot


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

    async def go() -> list[dict[str, Any]]:
        log, views, slot = await _views(settings)
        try:
            rows, _ = views.queries.list_runs(
                status=status, agent=agent, tenant=tenant, limit=limit
            )
            return rows
        finally:
            views.close()
            slot.release()
            await log.close()

    render.console().print(render.runs_table(_run(go)))


@main.command()
@click.argument("run_id")
@click.pass_obj
def show(settings: Settings, run_id: str) -> None:
    """A run's timeline: each step with its tokens, cost and latency."""

    async def go() -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        log, views, slot = await _views(settings)
        try:
            return views.queries.get_run(run_id), views.queries.steps(run_id)
        finally:
            views.close()
            slot.release()
            await log.close()

    run, steps = _run(go)
    if run is None:
        raise click.ClickException(f"unknown run {run_id}")
    out = render.console()
    out.print(render.steps_table(run, steps))
    tokens = run.get("tokens") or {}
    out.print(
        f"status {run.get('status')}  tokens {tokens.get('input', 0)} in / "
        f"{tokens.get('output', 0)} out  cost {render.money(run.get('cost_usd'))}"
    )
    if run.get("error"):
        out.print(f"[red]error: {run['error']}[/red]")


@main.group()
def projections() -> None:
    """Projection maintenance."""


@projections.command("rebuild")
@click.pass_obj
def projections_rebuild(settings: Settings) -> None:
    """Throw away this machine's query projections and refold them from the log."""

    async def go() -> int:
        log, views, slot = await _views(settings)
        try:
            return await views.rebuild()
        finally:
            views.close()
            slot.release()
            await log.close()

    click.echo(f"refolded {_run(go)} records")


if __name__ == "__main__":
    main()
