"""Run the API with uvicorn: ``wakeline serve`` and in-process servers (tests, embedding).

Secrets never reach the logs: the access log line of ``?key=...`` (the dashboard's
EventSource) is redacted by :class:`RedactKeys`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from wakeline.api.app import create_app
from wakeline.api.auth import KeyRing
from wakeline.api.errors import DEFAULT_MAX_BODY_BYTES
from wakeline.api.state import DEFAULT_MAX_STREAMS_PER_KEY
from wakeline.core.app import App
from wakeline.runtime import DEFAULT_PARTITIONS, ensure_topics, open_log

_KEY_PARAM = re.compile(r"([?&](?:key|api_key|token)=)[^&\s\"']*", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with the values of ``key=`` query parameters replaced."""
    return _KEY_PARAM.sub(r"\1" + REDACTED, text)


class RedactKeys(logging.Filter):
    """Redacts ``?key=`` values in a log record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_redaction() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in logger.filters):
            logger.addFilter(RedactKeys())


def server_config(
    api: FastAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
    access_log: bool = True,
    graceful_s: float = 5.0,
) -> uvicorn.Config:
    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        server_header=False,
        timeout_graceful_shutdown=max(1, int(graceful_s)),
        lifespan="on",
    )
    install_redaction()  # after Config: it (re)configures uvicorn's loggers
    return config


class _InProcessServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serving(
    api: FastAPI, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> AsyncIterator[str]:
    """Serve ``api`` on this event loop (port 0: a free port) until the block exits; yields
    the base URL, e.g. ``http://127.0.0.1:41234``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    bound_port = sock.getsockname()[1]
    server = _InProcessServer(
        server_config(api, host=host, port=bound_port, log_level=log_level, graceful_s=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped during startup")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def run_server(
    *,
    data: Path,
    kafka: str | None,
    keys: KeyRing,
    app: App | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    partitions: int = DEFAULT_PARTITIONS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_streams_per_key: int = DEFAULT_MAX_STREAMS_PER_KEY,
    log_level: str = "info",
) -> None:
    """``wakeline serve``: open the log, serve until SIGINT/SIGTERM, close the log."""
    log = await open_log(data=data, kafka=kafka)
    try:
        if kafka is None:
            await ensure_topics(log, partitions=partitions)  # an empty data dir has no runs
        api = create_app(
            log,
            state_dir=data / "state",
            keys=keys,
            app=app,
            max_body_bytes=max_body_bytes,
            max_streams_per_key=max_streams_per_key,
        )
        server = uvicorn.Server(server_config(api, host=host, port=port, log_level=log_level))
        await server.serve()
    finally:
        await log.close()
