"""``wakeline serve``: the HTTP API and dashboard (needs the ``api`` extra).

Registered on the main group by :func:`register` (kept apart so the CLI imports FastAPI only
when this command runs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import click

from wakeline.cli.common import run_async, target_app
from wakeline.runtime import DEFAULT_PARTITIONS

_KEYS_HELP = (
    "an API key NAME:ROLE:SECRET, ROLE one of viewer, operator, approver (repeatable). "
    "Prefer $WAKELINE_API_KEYS (comma-separated): command lines are visible to other users."
)


class _Settings(Protocol):
    data: Path
    kafka: str | None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--api-key", "api_keys", multiple=True, metavar="NAME:ROLE:SECRET", help=_KEYS_HELP)
@click.option(
    "--app",
    "target",
    default=None,
    metavar="MODULE",
    help="the agents' app: starts are checked (agent name, input schema) before publishing",
)
@click.option("--partitions", default=DEFAULT_PARTITIONS, show_default=True)
@click.option("--max-body-bytes", default=1024 * 1024, show_default=True, type=int)
@click.option(
    "--max-streams-per-key",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    help="event streams one API key may have open at once (429 beyond)",
)
@click.option("--log-level", default="info", show_default=True)
@click.pass_obj
def serve(
    settings: _Settings,
    host: str,
    port: int,
    api_keys: tuple[str, ...],
    target: str | None,
    partitions: int,
    max_body_bytes: int,
    max_streams_per_key: int,
    log_level: str,
) -> None:
    """Serve the HTTP API and the dashboard (http://HOST:PORT/) beside the workers."""
    try:
        from wakeline.api.auth import KEYS_ENV, KeyRing
        from wakeline.api.serve import run_server
    except ImportError as exc:
        raise click.ClickException(
            f"`wakeline serve` needs the api extra: pip install 'wakeline[api]' ({exc})"
        ) from exc
    try:
        keys = KeyRing.from_specs(api_keys, os.environ.get(KEYS_ENV))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--api-key / $WAKELINE_API_KEYS") from None
    if not keys:
        raise click.UsageError(f"no API keys: pass --api-key NAME:ROLE:SECRET or set ${KEYS_ENV}")
    app = None if target is None else target_app(target)[0]
    roles = ", ".join(f"{name} ({role.label})" for name, role in keys.names())
    click.echo(f"wakeline API on http://{host}:{port}/  keys: {roles}", err=True)
    run_async(
        lambda: run_server(
            data=settings.data,
            kafka=settings.kafka,
            keys=keys,
            app=app,
            host=host,
            port=port,
            partitions=partitions,
            max_body_bytes=max_body_bytes,
            max_streams_per_key=max_streams_per_key,
            log_level=log_level,
        )
    )


def register(main: click.Group) -> None:
    main.add_command(serve)
