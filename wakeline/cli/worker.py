"""``wakeline worker``: :func:`wakeline.worker.serve` behind a command line."""

from __future__ import annotations

import click

from wakeline.cli.common import Settings, run_async, target_app
from wakeline.runtime import DEFAULT_PARTITIONS
from wakeline.worker import DEFAULT_GROUP, Worker, serve


def register(main: click.Group) -> None:
    main.add_command(worker)


def _announce(w: Worker) -> None:
    click.echo(f"worker {w.worker_id} started", err=True)


@click.command()
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
    run_async(
        lambda: serve(
            app,
            data=settings.data,
            kafka=settings.kafka,
            topics=settings.topics,
            partitions=partitions,
            group=group,
            session_timeout_s=session_timeout,
            static_membership=membership == "static",
            on_started=_announce,
        )
    )
