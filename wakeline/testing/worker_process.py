"""The one worker process of the tests and benchmarks, built on :func:`wakeline.worker.serve`.

    python -m wakeline.testing.worker_process TARGET [--data DIR] [--kafka BOOTSTRAP]
        [--topic-prefix P] [--group G] [--state-dir DIR] [--session-timeout S]
        [--membership static|dynamic] [--partitions N] [--log-level L] [--log-hook MODULE:FN]

``TARGET`` is what ``wakeline worker`` takes (``MODULE[:NAME]``, ``MODULE:factory()``).  Unlike
the CLI it leaves the topics alone unless ``--partitions`` is given (tests create them), is a
dynamic group member by default, and prints ``worker-id <id>`` on stdout once the worker is
built.  ``--state-dir`` may hold ``{pid}`` (a fresh journal store per process); without it the
worker takes a free slot under ``DATA/state`` like the CLI.  ``--log-hook MODULE:FN`` passes
the opened log through ``FN(log) -> Log`` first (e.g. to wrap its writers with kill points).
With ``$WAKELINE_TEST_SPANS=FILE`` every span is written to ``FILE`` as it ends
(:mod:`wakeline.testing.span_file`), so spans outlive a SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wakeline.cli.main import LOG_LEVELS, configure_logging
from wakeline.runtime import import_target, load_target, open_log
from wakeline.telemetry.runtime import Telemetry
from wakeline.topics.port import Log
from wakeline.topics.specs import DEFAULT_TOPICS, prefixed_topics
from wakeline.worker import DEFAULT_GROUP, Worker, serve

SPANS_ENV = "WAKELINE_TEST_SPANS"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wakeline.testing.worker_process")
    p.add_argument("target")
    p.add_argument("--data", default=None)
    p.add_argument("--kafka", default=None)
    p.add_argument("--topic-prefix", default=None)
    p.add_argument("--group", default=DEFAULT_GROUP)
    p.add_argument("--state-dir", default=None)
    p.add_argument("--session-timeout", type=float, default=10.0)
    p.add_argument("--membership", choices=("static", "dynamic"), default="dynamic")
    p.add_argument("--partitions", type=int, default=None)
    p.add_argument("--log-level", choices=LOG_LEVELS, default="warning")
    p.add_argument("--log-hook", default=None, metavar="MODULE:FN")
    return p


def _announce(worker: Worker) -> None:
    print(f"worker-id {worker.worker_id}", flush=True)


def _telemetry() -> Telemetry | None:
    spans = os.environ.get(SPANS_ENV)
    if not spans:
        return None
    from wakeline.testing.span_file import telemetry

    return telemetry(Path(spans))


def _log_hook(spec: str) -> Callable[[Log], Log]:
    module_part, _, name = spec.rpartition(":")
    hook: Callable[[Log], Log] = getattr(import_target(module_part), name)
    return hook


async def run(args: argparse.Namespace) -> None:
    app, _ = load_target(args.target)
    options: dict[str, Any] = {
        "topics": prefixed_topics(args.topic_prefix) if args.topic_prefix else DEFAULT_TOPICS,
        "partitions": args.partitions,
        "group": args.group,
        "session_timeout_s": args.session_timeout,
        "static_membership": args.membership == "static",
        "state_dir": Path(args.state_dir.format(pid=os.getpid())) if args.state_dir else None,
        "telemetry": _telemetry(),
        "on_started": _announce,
    }
    if args.log_hook is None:
        await serve(app, data=args.data, kafka=args.kafka, **options)
        return
    opened = await open_log(data=args.data, kafka=args.kafka, topics=options["topics"])
    log = _log_hook(args.log_hook)(opened)
    try:
        await serve(app, data=args.data, log=log, **options)
    finally:
        await log.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    configure_logging(args.log_level)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
