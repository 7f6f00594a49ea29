"""CLI worker processes the way users run them, killed, paused and restarted in place.

Used by the CLI soak test (``tests/scale/test_kafka_cli_soak.py``) and the rebalance benchmark
(``benchmarks/rebalance.py``).  Every worker runs
``python -m wakeline.cli --kafka B --log-level info worker MODULE ...`` in the same working
directory with no ``--data``, so each one takes the first free slot of the default state
directory ``./.wakeline/state/worker-N``; a killed worker is started again in place with the
same command line and so reuses the slot it freed.  Each process (an *incarnation*, tagged
``<name>.<n>``) gets the model base URL ``.../<tag>/v1`` through the environment, so the fake
server's request log says which process sent each request; its stdout and stderr (the worker's
assignments, revokes and resumed partitions) go to ``<logs>/<tag>.log``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wakeline.testing.soak_agents import URL_ENV

STARTED = re.compile(r"worker (\S+) started")


@dataclass
class Incarnation:
    """One worker process."""

    name: str
    tag: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_at: float
    killed_at: float | None = None
    """When the test sent SIGKILL."""
    exited_at: float | None = None
    """When the test saw that the process had exited by itself."""
    pauses: list[tuple[float, float | None]] = field(default_factory=list)
    """(SIGSTOP, SIGCONT) times."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def paused(self) -> bool:
        """SIGSTOPped and not yet SIGCONTed."""
        return bool(self.pauses) and self.pauses[-1][1] is None

    @property
    def gone_at(self) -> float | None:
        """When the process stopped sending: killed, exited, or first paused."""
        times = [t for t in (self.killed_at, self.exited_at) if t is not None]
        times += [stop for stop, _ in self.pauses]
        return min(times) if times else None

    def worker_id(self) -> str | None:
        """The id the worker writes into its events (``worker ID started`` in its log)."""
        found = STARTED.search(self.log_path.read_text(errors="replace"))
        return found.group(1) if found else None

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class CliFleet:
    def __init__(
        self,
        *,
        bootstrap: str | None = None,
        data: Path | None = None,
        target: Path,
        cwd: Path,
        logs: Path,
        llm_base_url: str,
        args: Sequence[str],
        env: Mapping[str, str],
    ) -> None:
        """Workers on Kafka at ``bootstrap``, else on the embedded log in ``data``."""
        if (bootstrap is None) == (data is None):
            raise ValueError("give either bootstrap= (Kafka) or data= (the embedded log)")
        where = ["--kafka", bootstrap] if bootstrap is not None else ["--data", str(data)]
        self.command = [
            sys.executable,
            "-m",
            "wakeline.cli",
            *where,
            "--log-level",
            "info",
            "worker",
            str(target),
            *args,
        ]
        self.cwd, self.logs, self.base_url = cwd, logs, llm_base_url
        self.env = {k: v for k, v in os.environ.items() if k != "WAKELINE_DATA"}
        self.env.update(env)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.current: dict[str, Incarnation] = {}
        self.all: list[Incarnation] = []
        cwd.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str) -> Incarnation:
        n = sum(1 for i in self.all if i.name == name)
        tag = f"{name}.{n}"
        log_path = self.logs / f"{tag}.log"
        env = {**self.env, URL_ENV: self.base_url.replace("/v1", f"/{tag}/v1")}
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                self.command, cwd=self.cwd, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        inc = Incarnation(name, tag, proc, log_path, time.time())
        self.current[name] = inc
        self.all.append(inc)
        return inc

    def kill(self, name: str) -> Incarnation:
        inc = self.current[name]
        inc.killed_at = time.time()
        inc.proc.send_signal(signal.SIGKILL)
        inc.proc.wait(30)
        return inc

    def pause(self, name: str) -> Incarnation:
        inc = self.current[name]
        inc.proc.send_signal(signal.SIGSTOP)
        inc.pauses.append((time.time(), None))
        return inc

    def resume(self, inc: Incarnation) -> None:
        if inc.paused:
            inc.proc.send_signal(signal.SIGCONT)
            inc.pauses[-1] = (inc.pauses[-1][0], time.time())

    def self_exits(self) -> list[Incarnation]:
        """Current processes that exited though nobody killed them (marked, not restarted)."""
        found = []
        for inc in self.current.values():
            if inc.killed_at is None and inc.exited_at is None and not inc.alive:
                inc.exited_at = time.time()
                found.append(inc)
        return found

    def by_tag(self, tag: str) -> Incarnation | None:
        return next((i for i in self.all if i.tag == tag), None)

    def stop_all(self) -> None:
        for inc in self.current.values():
            if inc.alive:
                self.resume(inc)
                inc.proc.terminate()
        for inc in self.current.values():
            try:
                inc.proc.wait(20)
            except subprocess.TimeoutExpired:
                inc.proc.kill()
                inc.proc.wait(10)
