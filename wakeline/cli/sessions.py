"""``wakeline sessions show S`` and ``wakeline sessions fork S --at-turn K``; a turn is started
with ``wakeline run/start ... --session S`` (see :mod:`wakeline.sessions`)."""

from __future__ import annotations

import json

import click

from wakeline.cli import render
from wakeline.cli.common import Settings, cli_issuer, json_input, query, run_async
from wakeline.client import Client, RunHandle
from wakeline.core.sessions import SessionError
from wakeline.sessions import SessionRow


def register(main: click.Group) -> None:
    main.add_command(sessions)


@click.group()
def sessions() -> None:
    """Durable sessions: conversations whose turns are runs."""


def _clip(value: object, limit: int = 60) -> str:
    text = render.plain(value if isinstance(value, str) else json.dumps(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


@sessions.command()
@click.argument("session")
@click.pass_obj
def show(settings: Settings, session: str) -> None:
    """A session's turns: run, agent, status, input and output."""

    async def ask(client: Client) -> SessionRow | None:
        try:
            return await client.session(session)
        except SessionError as exc:
            raise click.UsageError(str(exc)) from exc

    row = query(settings, ask)
    if row is None:
        raise click.ClickException(f"unknown session {render.plain(session)}")
    head = f"session {render.plain(row.id)}: {len(row.turns)} turns"
    if row.forked_from is not None:
        head += f", forked from {render.plain(row.forked_from)} at turn {row.fork_turn}"
    click.echo(head)
    for t in row.turns:
        result = t.output if t.status == "completed" else t.error or ""
        click.echo(
            f"turn {t.turn}  {render.plain(t.run_id)}  {render.plain(t.agent)}  {t.status}  "
            f"{_clip(t.input)} -> {_clip(result)}"
        )


@sessions.command()
@click.argument("session")
@click.option("--at-turn", type=int, required=True, help="the first turn the new session runs")
@click.option("--session", "new", default="", help="the new session's id (default: generated)")
@click.option("--input", "input_", default=None, help="its input as JSON (default: the source's)")
@click.option("--model", default="", help="the model of that turn's calls")
@click.pass_obj
def fork(
    settings: Settings, session: str, at_turn: int, new: str, input_: str | None, model: str
) -> None:
    """Start a session whose turns before --at-turn are SESSION's (never run or billed
    again) and whose turn --at-turn runs live; a worker runs it.  Prints the new turn's run."""
    extra = {} if input_ is None else {"input": json_input(input_)}

    async def go() -> RunHandle:
        async with settings.connect(issuer=cli_issuer(), views_dir=settings.data / "state") as c:
            try:
                return await c.fork_session(
                    session, at_turn=at_turn, session=new, model=model, **extra
                )
            except SessionError as exc:
                raise click.UsageError(str(exc)) from exc

    handle = run_async(go)
    click.echo(f"forked {render.plain(session)} at turn {at_turn}: run {handle.run_id}")
