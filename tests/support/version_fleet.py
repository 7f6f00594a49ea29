"""Worker processes of :mod:`versioned_agents` on one embedded log, each with its own model
URL (``http://.../<tag>/v1``: the fake server's request log says which process asked what),
and what their logs say they own, followed line by line as they write them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from workers import LLM_URL_ENV, SUPPORT, worker_env

from wakeline.client import Client
from wakeline.runtime import ensure_topics
from wakeline.schemas.events import Event, GateOpened, RunCompleted, RunStarted
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.waits import wait_for_event, wait_until_ended
from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.partitioner import partition_for

_ASSIGNED = re.compile(r" (assigned|revoked) \[([\d, ]*)\]")
_ID = re.compile(r"^worker-id (\S+)")


class VersionWorker:
    """A running ``python -m wakeline.testing.worker_process versioned_agents.py:FACTORY``."""

    def __init__(self, tag: str, proc: asyncio.subprocess.Process) -> None:
        self.tag = tag
        self.proc = proc
        self.worker_id = ""
        self.owned: set[int] = set()
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(
        cls,
        data: Path,
        server: FakeLLMServer,
        factory: str,
        tag: str,
        *,
        kafka: tuple[str, str] | None = None,
    ) -> VersionWorker:
        """A worker on the embedded log in ``data`` or, with ``kafka`` (bootstrap, topic
        prefix), on Kafka (its state under ``data``)."""
        log = ["--data", str(data)] if kafka is None else ["--kafka", kafka[0]]
        log += [] if kafka is None else ["--topic-prefix", kafka[1]]
        command = [
            *(sys.executable, "-m", "wakeline.testing.worker_process"),
            f"{SUPPORT / 'versioned_agents.py'}:{factory}",
            *log,
            *("--state-dir", str(data / "state" / tag)),
            *("--session-timeout", "2.0", "--log-level", "info"),
        ]
        env = worker_env(data=data, **{LLM_URL_ENV: f"http://127.0.0.1:{server.port}/{tag}/v1"})
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        return cls(tag, proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if found := _ID.match(line):
                self.worker_id = found.group(1)
            if (moved := _ASSIGNED.search(line)) is not None:
                partitions = {int(p) for p in moved.group(2).split(",") if p.strip()}
                if moved.group(1) == "assigned":
                    self.owned |= partitions
                else:
                    self.owned -= partitions
            self._changed.set()
        self._changed.set()

    async def until(self, holds: Callable[[VersionWorker], bool], timeout_s: float = 30) -> None:
        """Return once ``holds(self)``, checked at every line the worker writes."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    self._changed.clear()  # no await between this and the check
                    if holds(self):
                        return
                    if self._reader.done():
                        raise AssertionError(f"worker {self.tag} exited: {self.tail()}")
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"worker {self.tag}: not within {timeout_s}s; {self.tail()}"
            ) from None

    async def owns(self, partitions: set[int]) -> None:
        await self.until(lambda w: w.worker_id != "" and w.owned == partitions)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.lines[-lines:])

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 15)
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        await self._reader


PARTITIONS = 4
ALL = set(range(PARTITIONS))


@pytest.fixture(name="fleet")
async def opened(tmp_path: Path) -> AsyncIterator[tuple[Path, Client, FakeLLMServer]]:
    """An embedded log of :data:`PARTITIONS` partitions, a client with views, a fake model."""
    data = tmp_path / "data"
    log = await EmbeddedLog.open(data)
    await ensure_topics(log, partitions=PARTITIONS)
    client = Client(log, views_dir=tmp_path / "views")
    with FakeLLMServer() as server:
        try:
            yield data, client, server
        finally:
            await client.aclose()
            await log.close()


def run_id_on(partitions: set[int]) -> str:
    while True:
        run_id = uuid.uuid4().hex
        if partition_for(run_id.encode(), PARTITIONS) in partitions:
            return run_id


async def at_gate(client: Client, run_id: str, gate: str) -> Event:
    def named(event: Event) -> bool:
        return isinstance(event.payload, GateOpened) and event.payload.name == gate

    return await wait_for_event(client, run_id, GateOpened, where=named)


async def left_by_v1(data: Path, client: Client, server: FakeLLMServer) -> str:
    """A ``summarize`` run started by a version-1 worker, waiting at its ``start`` gate after
    that worker stopped: the run's id."""
    old = await VersionWorker.spawn(data, server, "v1()", "old")
    try:
        await old.owns(ALL)
        run_id = (await client.start_run("summarize", "kelp")).run_id
        await at_gate(client, run_id, "start")
    finally:
        await old.stop()
    return run_id


async def finish(client: Client, run_id: str) -> list[Event]:
    """Approve both gates of a waiting ``summarize`` run; its events once it completed."""
    await client.approve(run_id, "start")
    await at_gate(client, run_id, "finish")
    await client.approve(run_id, "finish")
    assert isinstance((await wait_until_ended(client, run_id)).payload, RunCompleted)
    return [e async for e in client.events(run_id)]


def asked(server: FakeLLMServer, topic: str) -> list[tuple[str, str]]:
    """(worker tag, prompt) of every model request about ``topic``."""
    out = []
    for request in server.requests():
        prompt = str(request.body["messages"][-1]["content"])
        if topic in prompt:
            out.append((request.path.split("/")[1], prompt))
    return out


async def cli_process(data: Path, *args: str) -> tuple[int, str]:
    """``wakeline --data DATA ARGS...`` as a user runs it: its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "wakeline.cli", "--data", str(data), *args),
        env={**os.environ, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


def version_of(events: list[Event]) -> str:
    started = events[0].payload
    assert isinstance(started, RunStarted)
    return started.version
