"""The two log backends, for tests whose worker processes must behave the same on both.

A :class:`Backend` says where a test's log lives: the embedded log in a data directory, or
topics ``<prefix>.commands`` etc. (:func:`prefixed_topics`, the ledger included) and a consumer
group of their own on a Kafka broker, so tests sharing the broker do not meet.  Worker
processes of the agent modules in this directory get the same (:meth:`Backend.worker_command`).
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers import worker_command

from wakeline.actors.worker import DEFAULT_GROUP
from wakeline.core.app import App
from wakeline.runtime import ensure_topics
from wakeline.testing.harness import LocalRuntime, kafka_runtime, local_runtime, prefixed_topics
from wakeline.topics.chunked import ChunkedLog
from wakeline.topics.port import Log
from wakeline.topics.specs import DEFAULT_TOPICS, Topics

KAFKA_SESSION_S = 3.0
"""A SIGKILLed Kafka worker's partitions move to another member after this long."""


def backend_params() -> list[Any]:
    """``@pytest.fixture(params=backend_params())``: the Kafka one is marked kafka and slow."""
    import pytest  # not imported by worker processes

    return ["embedded", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.slow])]


def unique_prefix(name: str) -> str:
    return f"{name}{os.getpid()}{random.randrange(10**6)}"


@dataclass(frozen=True)
class Backend:
    data: Path
    """The embedded log's directory; on Kafka only the workers' scratch files live there."""
    bootstrap: str = ""
    """Empty for the embedded log."""
    prefix: str = ""
    group: str = DEFAULT_GROUP

    @classmethod
    def kafka(cls, data: Path, bootstrap: str, name: str) -> Backend:
        prefix = unique_prefix(name)
        return cls(data, bootstrap, prefix, f"{prefix}-workers")

    @property
    def name(self) -> str:
        return "kafka" if self.bootstrap else "embedded"

    @property
    def topics(self) -> Topics:
        return prefixed_topics(self.prefix) if self.bootstrap else DEFAULT_TOPICS

    @property
    def session_s(self) -> float | None:
        """The session timeout for worker processes on Kafka; ``None``: the script's own."""
        return KAFKA_SESSION_S if self.bootstrap else None

    def worker_command(self, target: str, *, session_s: float) -> list[str]:
        """A worker process of ``target`` (``FILE:NAME`` in this directory) on this backend,
        with a fresh journal store per process under ``DATA/state``; ``session_s`` is its
        session timeout on the embedded log (on Kafka :data:`KAFKA_SESSION_S`)."""
        options = ["--data", str(self.data), "--state-dir", str(self.data / "state" / "{pid}")]
        options += ["--session-timeout", str(self.session_s or session_s)]
        if self.bootstrap:
            options += ["--kafka", self.bootstrap, "--topic-prefix", self.prefix]
            options += ["--group", self.group]
        return worker_command(target, *options)

    async def open_log(self, *, client_id: str = "wakeline-test") -> Log:
        """The log as users open it (:func:`wakeline.runtime.open_log`: chunked records)."""
        inner: Log
        if self.bootstrap:
            from wakeline.topics.kafka.log import KafkaLog

            inner = await KafkaLog.open(self.bootstrap, client_id=client_id)
        else:
            from wakeline.topics.embedded.log import EmbeddedLog

            inner = await EmbeddedLog.open(self.data)
        return ChunkedLog(inner, self.topics.chunks)

    async def create(self, *, partitions: int) -> Log:
        """The log with this backend's topics in place (the test's side)."""
        log = await self.open_log()
        try:
            await ensure_topics(log, partitions=partitions, topics=self.topics)
        except BaseException:
            await log.close()
            raise
        return log


def backend_for(request: Any, data: Path, name: str) -> Backend:
    """The backend of a fixture parametrized with :func:`backend_params`."""
    if request.param == "embedded":
        return Backend(data)
    broker = request.getfixturevalue("kafka_broker")
    return Backend.kafka(data, broker.bootstrap, name)


@asynccontextmanager
async def runtime_for(request: Any, app: App, data: Path, name: str) -> AsyncIterator[LocalRuntime]:
    """An in-process worker of ``app`` and a client on the backend of a fixture parametrized
    with :func:`backend_params` (on Kafka: topics and group of its own, named after ``name``);
    the embedded log when ``request`` is ``None`` or not parametrized."""
    if getattr(request, "param", "embedded") == "embedded":
        async with local_runtime(app, data) as runtime:
            yield runtime
    else:
        bootstrap = request.getfixturevalue("kafka_broker").bootstrap
        prefix = unique_prefix(name)
        async with kafka_runtime(app, bootstrap, data, prefix=prefix) as runtime:
            yield runtime
