"""Worker processes on Kafka for the scale tests: start, SIGKILL, SIGSTOP, restart."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from workers import worker_command, worker_env

from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import Event
from wakeline.topics.port import Log


@dataclass
class Fleet:
    bootstrap: str
    base_url: str
    prefix: str
    root: Path
    session_s: float = 3.0
    group: str = field(default_factory=lambda: f"g-{uuid.uuid4().hex[:8]}")
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self, name: str, *, tag_requests: bool = False, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start worker ``name``; with ``tag_requests`` its model requests go to the path
        ``/<name>/v1/...`` so the fake server's log shows which worker sent each one."""
        state = self.root / f"{name}-{uuid.uuid4().hex[:6]}"
        log_file = (self.root / f"{name}.log").open("ab")
        args = worker_command(
            "kafka_agents.py:app_from_env()",
            "--kafka",
            self.bootstrap,
            "--topic-prefix",
            self.prefix,
            "--group",
            self.group,
            "--state-dir",
            str(state),
            "--session-timeout",
            str(self.session_s),
            "--log-level",
            "info",
        )
        url = self.base_url.replace("/v1", f"/{name}/v1") if tag_requests else self.base_url
        environ = worker_env(llm_url=url, **(env or {}))
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=environ)
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()

    def output(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")


async def all_events(log: Log, topic: str) -> dict[str, list[Event]]:
    """Every run's events, in log order, from every partition of ``topic``."""
    codec = event_codec()
    runs: dict[str, list[Event]] = {}
    for partition in range(await log.partition_count(topic)):
        end = await log.end_offset(topic, partition)
        offset = 0
        while offset < end:
            records = await log.read(topic, partition, offset, max_records=5000)
            if not records:
                break
            for record in records:
                event = codec.decode(record.value)
                runs.setdefault(event.run_id, []).append(event)
            offset = records[-1].offset + 1
    return runs


def check_journal(run_id: str, events: list[Event], calls: int) -> None:
    """Dense per-run sequence numbers, no duplicate, one result per request, completed."""
    seqs = [e.seq for e in events]
    assert seqs == list(range(len(events))), f"{run_id}: seqs {seqs}"
    types = [e.type for e in events]
    assert types[0] == "RunStarted" and types[-1] == "RunCompleted", f"{run_id}: {types}"
    assert types.count("ModelCallCompleted") == calls, f"{run_id}: {types}"
    steps = [getattr(e.payload, "step", None) for e in events]
    done = [s for s in steps if s is not None]
    assert len(done) == len(set(done)), f"{run_id}: a step has two results"
