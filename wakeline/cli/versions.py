"""``wakeline runs upgrade AGENT --to VERSION --app TARGET [--dry-run]``: replay-checked
upgrades of in-flight runs (:mod:`wakeline.upgrading`)."""

from __future__ import annotations

import click

from wakeline.cli import render
from wakeline.cli.common import Settings, cli_issuer, run_async, target_app
from wakeline.core.app import App
from wakeline.upgrading import UpgradeCheck


def register(main: click.Group) -> None:
    main.add_command(runs_group)


@click.group("runs")
def runs_group() -> None:
    """Runs of an agent as a whole: upgrade them to another version of its code."""


@runs_group.command("upgrade")
@click.argument("agent")
@click.option("--to", "to_version", required=True, help="the version to move the runs to")
@click.option("--app", "target", required=True, help="MODULE[:NAME] hosting that version")
@click.option("--dry-run", is_flag=True, help="only report which runs would diverge")
@click.pass_obj
def upgrade(settings: Settings, agent: str, to_version: str, target: str, dry_run: bool) -> None:
    """Replay each in-flight run of AGENT against version --to of --app, no provider
    reachable; move the runs that do not diverge (not with --dry-run), report those that do.
    Exit 1 if a run diverged or its upgrade was refused."""
    app, _ = target_app(target)
    if not isinstance(app, App):
        raise click.UsageError(f"{target} is not a wakeline App")

    async def go() -> list[UpgradeCheck]:
        async with settings.querying(issuer=cli_issuer()) as client:
            try:
                return await client.upgrade(agent, to_version, app, dry_run=dry_run)
            except ValueError as exc:
                raise click.UsageError(str(exc)) from exc

    checks = run_async(go)
    for check in checks:
        for line in check.describe().splitlines():
            click.echo(render.plain(line))
    diverged = sum(not c.ok for c in checks)
    refused = sum(c.outcome.startswith("refused") for c in checks)
    if dry_run:
        click.echo(f"{len(checks) - diverged} would move, {diverged} diverged (dry run)")
    else:
        moved = sum(c.outcome == "upgraded" for c in checks)
        click.echo(f"{moved} upgraded, {diverged} diverged, {refused} refused")
    raise SystemExit(1 if diverged or refused else 0)
