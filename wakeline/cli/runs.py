"""Commands about one run: run, start, tail, resume, cancel, replay."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from wakeline.cli import render
from wakeline.cli.common import Settings, cli_issuer, json_input, run_async, send, target_app
from wakeline.client import Client, RunError, RunHandle
from wakeline.core.sessions import SessionError
from wakeline.forking import ForkError
from wakeline.replay import ReplayReport, replay_run
from wakeline.worker import serve


def register(main: click.Group) -> None:
    for command in (run, start, tail, resume, cancel, replay, fork):
        main.add_command(command)


async def _print_updates(
    client: Client, run_id: str, from_offset: int = 0, turn: RunHandle | None = None
) -> None:
    """The run's events and notices, one line each, and the live text of streamed calls (of a
    session turn: without the notices from before it was sent)."""
    out = render.console()
    live = render.LiveText(out)
    if turn is not None:
        updates = client.watch_turn(turn, deltas=True)
    else:
        updates = client.watch(run_id, from_offset=from_offset, deltas=True)
    async for update in updates:
        if update.delta is not None:
            live.delta(update.delta)
            continue
        live.end()
        if update.event is not None:
            out.print(render.event_line(update.event))
        elif update.notice is not None:
            out.print(render.notice_line(update.notice))
        elif update.skipped is not None:
            out.print(f"[bold red]notice[/bold red] {render.safe(update.skipped)}")
    live.end()


async def _follow(client: Client, handle: RunHandle, turn: bool) -> int:
    """Print the run's events as they come, then its result (0) or why it did not end (1)."""
    out = render.console()
    out.print(f"run [bold]{render.safe(handle.run_id)}[/bold] on partition {handle.partition}")
    await _print_updates(client, handle.run_id, handle.from_offset, handle if turn else None)
    try:
        if turn:  # another start may have taken the turn: then not ours to print
            result = await client.turn_result(handle)
        else:
            result = await client.result(handle.run_id, from_offset=handle.from_offset)
    except RunError as exc:
        out.print(f"[red]{render.safe(exc)}[/red]")
        return 1
    click.echo(render.json_text(result))
    return 0


async def _follow_while_serving(
    client: Client, handle: RunHandle, serving: asyncio.Task[None], turn: bool
) -> int:
    """Follow the run to its end; if the worker stops first (SIGINT / SIGTERM, or an error,
    which is raised), stop following: the run goes on when a worker serves it again."""
    following = asyncio.create_task(_follow(client, handle, turn))
    await asyncio.wait({following, serving}, return_when=asyncio.FIRST_COMPLETED)
    if following.done():
        return following.result()
    following.cancel()
    serving.result()
    click.echo(
        f"stopped; run {render.plain(handle.run_id)} goes on when a worker serves it", err=True
    )
    return 130


@dataclass(frozen=True)
class StartArgs:
    """What ``run`` and ``start`` start: the options of :func:`start_options`."""

    input: Any
    run_id: str | None
    tenant: str
    session: str
    version: str


def start_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options of a start (``--input``, ``--run-id``, ``--tenant``, ``--session``,
    ``--agent-version``), passed to ``command`` as one :class:`StartArgs` named ``start``."""

    @functools.wraps(command)
    def wrapped(
        *args: Any,
        input_: str,
        run_id: str | None,
        tenant: str,
        session: str,
        version: str,
        **kwargs: Any,
    ) -> None:
        start = StartArgs(json_input(input_), run_id, tenant, session, version)
        command(*args, start=start, **kwargs)

    options = [
        click.option("--input", "input_", default="null", help="the agent's input as JSON"),
        click.option("--run-id", default=None),
        click.option("--tenant", default=""),
        click.option(
            "--session", default="", help="start the next turn of this session (run SESSION:TURN)"
        ),
        click.option(
            "--agent-version",
            "version",
            default="",
            help="the agent version to start (default: the starting worker's highest)",
        ),
    ]
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


def _connect(settings: Settings) -> AbstractAsyncContextManager[Client]:
    """A client with this machine's views (a session's turns are read from them)."""
    return settings.connect(issuer=cli_issuer(), views_dir=settings.data / "state")


async def _start(client: Client, agent: str, start: StartArgs) -> RunHandle:
    try:
        return await client.start_run(
            agent,
            start.input,
            run_id=start.run_id,
            tenant=start.tenant,
            session=start.session,
            version=start.version,
        )
    except SessionError as exc:
        raise click.UsageError(str(exc)) from exc


@click.command()
@click.argument("target")
@start_options
@click.pass_obj
def run(settings: Settings, target: str, start: StartArgs) -> None:
    """Run MODULE:AGENT in this process, streaming its events, and print the result (with
    --session, as the session's next turn)."""
    app, agent = target_app(target)
    if agent is None:
        raise click.UsageError("name the agent: MODULE:AGENT")

    async def go() -> int:
        async with _connect(settings) as client:
            await client.create_topics()
            stop = asyncio.Event()
            # a member for the length of this command: dynamic, so it leaves the group at once
            worker = serve(
                app,
                log=client.log,
                data=settings.data,
                topics=settings.topics,
                partitions=None,
                static_membership=False,
                stop=stop,
            )
            serving = asyncio.create_task(worker)
            try:
                handle = await _start(client, agent, start)
                return await _follow_while_serving(client, handle, serving, bool(start.session))
            finally:
                stop.set()
                await serving

    raise SystemExit(run_async(go))


@click.command()
@click.argument("agent")
@start_options
@click.pass_obj
def start(settings: Settings, agent: str, start: StartArgs) -> None:
    """Publish a start command for AGENT (a worker runs it); print the run id."""
    agent = agent.rpartition(":")[2]

    async def go() -> str:
        async with _connect(settings) as client:
            await client.create_topics()
            handle = await _start(client, agent, start)
            return handle.run_id

    click.echo(render.plain(run_async(go)))


@click.command()
@click.argument("run_id")
@click.pass_obj
def tail(settings: Settings, run_id: str) -> None:
    """Follow a run's events until it ends."""

    async def go() -> None:
        async with settings.connect() as client:
            await _print_updates(client, run_id)

    run_async(go)


@click.command()
@click.argument("run_id")
@click.pass_obj
def resume(settings: Settings, run_id: str) -> None:
    """Ask the workers to resume a run from its journal (e.g. after fixing drifted code)."""
    send(settings, lambda c: c.resume(run_id))
    click.echo(f"resume requested for {render.plain(run_id)}")


@click.command()
@click.argument("run_id")
@click.option("--reason", default="cancelled from the CLI")
@click.pass_obj
def cancel(settings: Settings, run_id: str, reason: str) -> None:
    """Cancel a run."""
    send(settings, lambda c: c.cancel(run_id, reason))
    click.echo(f"cancel requested for {render.plain(run_id)}")


@click.command()
@click.argument("run_id")
@click.argument("target")
@click.pass_obj
def replay(settings: Settings, run_id: str, target: str) -> None:
    """Re-drive RUN_ID with the code in TARGET, no provider reachable; compare bytes."""
    app, _ = target_app(target)

    async def go() -> ReplayReport:
        async with settings.connect() as client:
            try:
                return await replay_run(client.log, app, run_id, topics=settings.topics)
            except LookupError as exc:
                raise click.UsageError(str(exc)) from exc

    raise SystemExit(_print_replay(run_async(go)))


def _print_replay(report: ReplayReport) -> int:
    if report.identical:
        state = "ended" if report.ended else "still open"
        click.echo(
            f"byte-identical: {report.checked} produced events of {report.events} "
            f"match the log (run {state})"
        )
        return 0
    d = report.divergence
    assert d is not None
    click.echo(f"DIVERGED at seq {d.seq}, field {render.plain(d.field)}")
    click.echo(f"  recorded: {render.plain(d.recorded)}")
    click.echo(f"  replayed: {render.plain(d.replayed)}")
    return 1


@click.command()
@click.argument("run_id")
@click.option("--at", "at", type=int, required=True, help="the seq of the call to redo")
@click.option("--model", default="", help="the model of the fork's calls from --at on")
@click.option(
    "--tools",
    type=click.Choice(["live", "recorded"]),
    default="live",
    show_default=True,
    help="recorded: tool calls that match the source's get its results instead of running",
)
@click.option(
    "--prompt-override",
    "prompt_file",
    metavar="FILE",
    default=None,
    help="a file whose text is the system prompt of the fork's model calls from --at on",
)
@click.pass_obj
def fork(
    settings: Settings, run_id: str, at: int, model: str, tools: str, prompt_file: str | None
) -> None:
    """Start a run that reuses RUN_ID's journal before seq --at (never billed again) and runs
    live from there; a worker runs it.  Prints the new run's id."""
    prompt = "" if prompt_file is None else _prompt(prompt_file)

    async def go() -> RunHandle:
        async with settings.connect(issuer=cli_issuer()) as client:
            try:
                return await client.fork(run_id, at=at, model=model, tools=tools, prompt=prompt)
            except ForkError as exc:
                raise click.UsageError(str(exc)) from exc

    handle = run_async(go)
    click.echo(f"forked {render.plain(run_id)} at seq {at}: run {render.plain(handle.run_id)}")


def _prompt(path: str) -> str:
    """The text of a --prompt-override file, or a usage error (exit 2) that says what is
    wrong with it."""
    where = render.plain(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise click.UsageError(f"--prompt-override {where}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise click.UsageError(f"--prompt-override {where} is not UTF-8 text: {exc}") from exc
    if not text.strip():
        raise click.UsageError(f"--prompt-override {where} is empty")
    return text
