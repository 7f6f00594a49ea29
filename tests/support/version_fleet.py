"""Worker processes of :mod:`versioned_agents` on one embedded log, each with its own model
URL (``http://.../<tag>/v1``: the fake server's request log says which process asked what),
and what their logs say they own, followed line by line as they write them."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import Callable
from pathlib import Path

from workers import LLM_URL_ENV, SUPPORT, worker_env

from wakeline.testing.fake_llm import FakeLLMServer

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
        cls, data: Path, server: FakeLLMServer, factory: str, tag: str
    ) -> VersionWorker:
        command = [
            *(sys.executable, "-m", "wakeline.testing.worker_process"),
            f"{SUPPORT / 'versioned_agents.py'}:{factory}",
            *("--data", str(data), "--state-dir", str(data / "state" / tag)),
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
