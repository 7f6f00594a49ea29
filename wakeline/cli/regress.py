"""``wakeline regress record`` and ``wakeline regress check``: recorded runs as regression
tests (see :mod:`wakeline.regress`)."""

from __future__ import annotations

from pathlib import Path

import click

from wakeline import regress
from wakeline.cli import render
from wakeline.cli.common import Settings, run_async, target_app


@click.group()
def regress_group() -> None:
    """Record runs as regression bundles; check the current code against them."""


@regress_group.command("record")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="directory")
@click.pass_obj
def record(settings: Settings, run_ids: tuple[str, ...], out: Path) -> None:
    """Write one self-contained bundle per RUN_ID into OUT."""

    async def go() -> list[regress.Bundle]:
        async with settings.connect() as client:
            try:
                return await regress.read(client.log, run_ids, topics=settings.topics)
            except LookupError as exc:
                raise click.UsageError(str(exc)) from exc

    for path in regress.write(run_async(go), out):
        click.echo(f"recorded {render.plain(str(path))}")


@regress_group.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--app", "target", required=True, help="MODULE[:NAME] of the current code")
def check(paths: tuple[Path, ...], target: str) -> None:
    """Replay every bundle under PATHS against --app, with no provider reachable; exit 1 on
    the first divergence of any of them."""
    app, _ = target_app(target)
    try:
        results = regress.check(app, paths)
    except regress.BundleError as exc:
        raise click.UsageError(str(exc)) from exc
    if not results:
        raise click.UsageError(f"no *{regress.SUFFIX} bundles under {', '.join(map(str, paths))}")
    for result in results:
        for line in result.describe().splitlines():
            click.echo(render.plain(line))
    failed = sum(not r.passed for r in results)
    click.echo(f"{len(results) - failed} passed, {failed} diverged")
    raise SystemExit(1 if failed else 0)


def register(group: click.Group) -> None:
    group.add_command(regress_group, "regress")
