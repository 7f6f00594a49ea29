"""Run workers: :func:`serve` an app until SIGINT / SIGTERM, or drive a :class:`Worker` yourself.

    import asyncio
    from wakeline.worker import serve
    from myagents import app

    asyncio.run(serve(app))                      # the embedded log in ./.wakeline
    asyncio.run(serve(app, kafka="broker:9092"))  # a member of the workers' group on Kafka

``wakeline worker MODULE`` is this function behind a command line.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from wakeline.actors.worker import DEFAULT_GROUP, Worker
from wakeline.core.app import App
from wakeline.runtime import (
    DEFAULT_PARTITIONS,
    StateDir,
    data_dir,
    ensure_topics,
    open_log,
)
from wakeline.telemetry.runtime import Telemetry
from wakeline.topics.port import Log
from wakeline.topics.signing import KEY_ENV, RecordSigner
from wakeline.topics.specs import DEFAULT_TOPICS, Topics

__all__ = ["DEFAULT_GROUP", "Telemetry", "Worker", "serve"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

logger = logging.getLogger(__name__)

UNSIGNED = (
    f"events are not signed (no ${KEY_ENV}): a record appended to the events topic "
    "by anyone allowed to produce to it cannot be told from a worker's"
)


async def serve(
    app: App,
    *,
    data: str | Path | None = None,
    kafka: str | None = None,
    log: Log | None = None,
    topics: Topics = DEFAULT_TOPICS,
    partitions: int | None = DEFAULT_PARTITIONS,
    group: str = DEFAULT_GROUP,
    session_timeout_s: float = 10.0,
    static_membership: bool = True,
    state_dir: Path | None = None,
    telemetry: Telemetry | None = None,
    on_started: Callable[[Worker], None] | None = None,
    stop: asyncio.Event | None = None,
    signer: RecordSigner | None = None,
) -> None:
    """Run a worker of ``app`` until SIGINT or SIGTERM (or ``stop`` is set), then leave the
    group and close what it opened.

    The log: ``log`` when given (the caller's to close), else Kafka when ``kafka`` (bootstrap
    servers) is given, else the embedded log in ``data`` (``$WAKELINE_DATA``, ``./.wakeline``).
    ``partitions``: the topics are created with that many partitions when missing (existing
    ones are kept); ``None`` leaves the topics alone.  ``state_dir``: where the worker keeps
    its journal store; by default a free slot under ``DATA/state`` whose stable instance id
    makes the worker a static group member (unless ``static_membership`` is false), so a
    worker restarted within the session timeout gets its partitions back without a rebalance.
    ``on_started`` is called with the worker before it joins the group.  ``signer``: the
    record key the worker signs its events with and checks the log's with; by default the
    log's (:func:`~wakeline.topics.signing.signer_for`).
    """
    opened = log is None
    log = log if log is not None else await open_log(data=data, kafka=kafka, topics=topics)
    slot: StateDir | None = None
    try:
        if partitions is not None:
            await ensure_topics(log, partitions=partitions, topics=topics)
        if state_dir is None:
            slot = StateDir(data_dir(data) / "state")
            state_dir = slot.path
        worker = Worker(
            app,
            log,
            state_dir=state_dir,
            topics=topics,
            group=group,
            session_timeout_s=session_timeout_s,
            instance_id=slot.instance_id if slot is not None and static_membership else None,
            telemetry=telemetry,
            signer=signer,
        )
        if on_started is not None:
            on_started(worker)
        await _run_until_signalled(worker, stop or asyncio.Event())
    finally:
        if slot is not None:
            slot.release()
        if opened:
            await log.close()


async def _run_until_signalled(worker: Worker, stop: asyncio.Event) -> None:
    if worker.signer is None:
        logger.warning(UNSIGNED)
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        await worker.run(stop)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
