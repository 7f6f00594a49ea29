"""The two threads of an embedded log's SQLite store, and how their answers reach the loop.

An :class:`OpThread` runs blocking operations one after the other, in the order they were
submitted.  It takes *every* operation queued when it looks (a batch), runs them, and answers
the whole batch with a single ``call_soon_threadsafe`` per event loop: one wake-up of the loop
however many operations were waiting.  That is cheaper than a thread pool's per-call future
chaining, and it is what lets the write thread put the appends that queued up while it was
busy into one transaction (group commit; see :mod:`wakeline.topics.embedded.store`).

A job's future is resolved on its own loop, after the batch ran; a job whose awaiting caller
was cancelled still runs (an append may land although nobody waits for its answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = object()


class Job:
    """One operation submitted to an :class:`OpThread`, and its outcome once it ran."""

    __slots__ = ("error", "future", "loop", "op", "result")

    def __init__(self, op: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.op = op
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.result: Any = None
        self.error: BaseException | None = None


Execute = Callable[[list[Job]], None]
"""Runs a batch of jobs on the thread, setting each one's ``result`` or ``error``."""

Delivered = Callable[[list[Job]], None]
"""Called on the loop once a batch's futures are resolved (e.g. to wake readers)."""


class OpThread:
    """A daemon thread that runs batches of jobs with ``execute`` (see the module docstring)."""

    def __init__(self, name: str, execute: Execute, delivered: Delivered | None = None) -> None:
        self._name = name
        self._execute = execute
        self._delivered = delivered
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        """Batches run so far (each answered with one wake-up of the loop)."""

    def submit(self, op: Any) -> asyncio.Future[Any]:
        """Queue ``op``; the future resolves (on the calling loop) once it ran."""
        job = Job(op, asyncio.get_running_loop())
        self._start()
        self._queue.put(job)
        return job.future

    @property
    def queued(self) -> int:
        """Jobs submitted and not yet taken by the thread."""
        return self._queue.qsize()

    def stop(self) -> None:
        """Let the thread end once everything queued before has run."""
        self._queue.put(_STOP)

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    thread = threading.Thread(target=self._main, name=self._name, daemon=True)
                    thread.start()
                    self._thread = thread

    def _main(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[Job] = [first]
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            try:
                self._execute(batch)
            except BaseException as exc:  # a bug of execute: fail the batch, keep the thread
                for job in batch:
                    if job.error is None and job.result is None:
                        job.error = exc
            self.batches += 1
            self._answer(batch)

    def _answer(self, batch: list[Job]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Job]] = {}
        for job in batch:
            by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self._resolve, jobs)

    def _resolve(self, jobs: list[Job]) -> None:
        for job in jobs:
            if job.future.done():  # its caller was cancelled
                continue
            if job.error is not None:
                job.future.set_exception(job.error)
            else:
                job.future.set_result(job.result)
        if self._delivered is not None:
            self._delivered(jobs)
