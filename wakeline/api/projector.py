"""The API's own projections: the query views (runs, steps, audit, costs, budgets) in a
``StateDir`` slot ("api-N"), kept live by a background task that tails the log.  The API reads
only from here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from wakeline.projections.queries import Queries
from wakeline.projections.runner import follow
from wakeline.projections.views import Views, query_projections, topic_names
from wakeline.runtime import StateDir
from wakeline.topics.port import Log, Record
from wakeline.topics.signing import RecordSigner, signer_for
from wakeline.topics.specs import DEFAULT_TOPICS, Topics

log = logging.getLogger("wakeline.api")


class Projector:
    """Folds the log into the API's views: once at start, then live until :meth:`stop`."""

    def __init__(
        self,
        log: Log,
        state_dir: Path,
        *,
        topics: Topics = DEFAULT_TOPICS,
        poll_s: float = 0.2,
        retry_s: float = 1.0,
        signer: RecordSigner | None = None,
    ) -> None:
        self._log = log
        self._state_dir = state_dir
        self._topics = topics
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._signer = signer
        self._slot: StateDir | None = None
        self._views: Views | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.error: str | None = None
        """The last error of the follower (``None`` while it is healthy)."""
        self.folded = 0
        self.last_fold_ms: int | None = None
        self._folded = asyncio.Event()  # set, then replaced, at every fold

    @property
    def views(self) -> Views:
        """The API's views (runs and steps queries, costs, budgets, audit trails)."""
        if self._views is None:
            raise RuntimeError("the projector is not started")
        return self._views

    @property
    def queries(self) -> Queries:
        return self.views.queries

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def signer(self) -> RecordSigner | None:
        """The record key of the views (given, else the log's; known once started)."""
        return self._signer

    async def start(self) -> None:
        if self._signer is None:
            self._signer = signer_for(self._log)
        self._slot = StateDir(self._state_dir, prefix="api")
        self._views = Views(self._log, self._slot.path, topics=self._topics, signer=self._signer)
        self.folded += await self._views.refresh()
        self._task = asyncio.create_task(self._follow(), name="wakeline-api-projector")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._views is not None:
            self._views.close()
        if self._slot is not None:
            self._slot.release()

    async def wait_until(self, condition: Callable[[Views], bool], *, timeout_s: float) -> None:
        """Return once ``condition(views)`` holds, checked now and after every fold; raises
        :class:`TimeoutError` after ``timeout_s`` (for tests and tools that must see a write)."""
        async with asyncio.timeout(timeout_s):
            while not condition(self.views):
                await self._folded.wait()

    def _on_fold(self, records: Sequence[Record]) -> None:
        self.folded += len(records)
        self.last_fold_ms = int(time.time() * 1000)
        self.error = None
        self._folded.set()
        self._folded = asyncio.Event()

    async def _follow(self) -> None:
        assert self._views is not None
        names = topic_names(self._topics)
        while not self._stop.is_set():
            try:
                await follow(
                    self._log,
                    self._views.queries.store,
                    query_projections(),
                    stop=self._stop,
                    topic_names=names,
                    poll_s=self._poll_s,
                    on_fold=self._on_fold,
                )
            except Exception as exc:  # keep serving reads; report it on /healthz
                self.error = f"{type(exc).__name__}: {exc}"
                log.exception("the API projections stopped following the log; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=self._retry_s)
