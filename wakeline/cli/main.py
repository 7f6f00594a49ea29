"""The ``wakeline`` command: a thin layer over :class:`wakeline.Client` and friends.

Exit codes: 0 success, 1 the run failed / replay diverged, 2 usage or input errors, 130
``run`` interrupted (SIGINT / SIGTERM: its run goes on when a worker serves it).  The
commands live in :mod:`.runs` (run, start, tail, resume, cancel, replay), :mod:`.worker`,
:mod:`.queries` (ls, show, costs, topics, projections), :mod:`.governance`, :mod:`.serve`,
:mod:`.regress`, :mod:`.diff` and :mod:`.sessions`.
"""

from __future__ import annotations

import logging

import click

from wakeline.cli import diff, governance, queries, regress, runs, serve, sessions, versions, worker
from wakeline.cli.common import Settings

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


for _module in (runs, worker, queries, governance, serve, regress, diff, sessions, versions):
    _module.register(main)
