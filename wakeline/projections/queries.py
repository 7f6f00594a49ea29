"""Read API over a projection store folded by the runs and steps projections."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import TypedDict, Unpack

from wakeline.projections.journal import is_seq_suffix
from wakeline.projections.rows import Page, RunRow, RunStatus, StepRow, load
from wakeline.projections.runs import MAX_MS, run_key, started_prefix, started_rank
from wakeline.projections.steps import step_key, steps_prefix
from wakeline.projections.store import PROJECTION_ERRORS, ProjectionStore, load_json

_CURSOR = re.compile(r"\d{16}/.+", re.DOTALL)
_RANK_DIGITS = 16


class RunFilter(TypedDict, total=False):
    """Which runs :meth:`Queries.list_runs` lists: ``since_ms <= started < until_ms``."""

    status: RunStatus | None
    agent: str | None
    tenant: str | None
    since_ms: int | None
    until_ms: int | None
    orphaned: bool | None


class RunQuery(RunFilter, total=False):
    """A :class:`RunFilter` and the page: ``limit`` rows (default 50) after ``cursor``."""

    limit: int
    cursor: str | None


class Queries:
    """Queries of runs and steps: :mod:`wakeline.projections.rows` rows."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store
        self.hosted: frozenset[tuple[str, str]] | None = None
        """The ``(agent, version)`` pairs the live workers host (``None``: unknown), set by
        :meth:`Views.refresh <wakeline.projections.views.Views.refresh>`; an open run of a
        pair not among them is read as ``orphaned``."""

    def get_run(self, run_id: str) -> RunRow | None:
        row = self.store.get_json(run_key(run_id))
        if row is None:
            return None
        run = load(RunRow, row)
        hosted = self.hosted
        if hosted is not None and not run.ended and run.last_seq >= 0:
            run = dataclasses.replace(run, orphaned=(run.agent, run.version) not in hosted)
        return run

    def list_runs(self, **query: Unpack[RunQuery]) -> Page[RunRow]:
        """Runs newest first (by ``started_ms``, then run id), ``since_ms <= started < until_ms``.

        Returns a page of at most ``limit`` rows and the cursor of the next page (``None`` when
        no further run matches).  Cursors are opaque strings.
        """
        limit = query.get("limit", 50)
        if limit <= 0:
            raise ValueError("limit must be positive")
        prefix = started_prefix()
        since_ms = query.get("since_ms")
        stop_rank = None if since_ms is None else started_rank(since_ms)
        start = _start(prefix, query.get("until_ms"), query.get("cursor"))
        rows: list[RunRow] = []
        last = ""
        for key, _ in self.store.scan(prefix, start=start):
            suffix = key[len(prefix) :].decode()
            if stop_rank is not None and suffix[:_RANK_DIGITS] > stop_rank:
                break
            row = self.get_run(suffix[_RANK_DIGITS + 1 :])
            if row is None or not _matches(row, query):
                continue
            if len(rows) == limit:
                return Page(tuple(rows), last)
            rows.append(row)
            last = suffix
        return Page(tuple(rows))

    def all_runs(self, **where: Unpack[RunFilter]) -> Iterator[RunRow]:
        """Every run :meth:`list_runs` lists, page after page."""
        cursor: str | None = None
        while True:
            page = self.list_runs(**where, limit=500, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def steps(self, run_id: str) -> list[StepRow]:
        """The run's steps in seq order."""
        prefix = steps_prefix(run_id)
        return [
            load(StepRow, load_json(v))
            for k, v in self.store.scan(prefix)
            if is_seq_suffix(k, prefix)
        ]

    def steps_page(self, run_id: str, *, after: int = -1, limit: int = 200) -> Page[StepRow]:
        """Up to ``limit`` of the run's steps with a seq above ``after``, in seq order; the
        page's cursor is the last seq on it (``None`` after the last step)."""
        prefix = steps_prefix(run_id)
        start = step_key(run_id, after + 1) if after >= 0 else None
        rows: list[StepRow] = []
        for k, v in self.store.scan(prefix, start=start):
            if not is_seq_suffix(k, prefix):
                continue
            if len(rows) == limit:
                return Page(tuple(rows), str(rows[-1].seq))
            rows.append(load(StepRow, load_json(v)))
        return Page(tuple(rows), None)

    def step(self, run_id: str, seq: int) -> StepRow | None:
        """The step the event at ``seq`` opened, or ``None``."""
        row = self.store.get_json(step_key(run_id, seq))
        return None if row is None else load(StepRow, row)

    def run_start_offset(self, run_id: str) -> tuple[int, int] | None:
        """``(partition, offset)`` of the run's ``RunStarted`` on the events topic."""
        row = self.store.get_json(run_key(run_id))
        if row is None or row["start_offset"] is None or row["partition"] is None:
            return None
        return int(row["partition"]), int(row["start_offset"])

    def projection_errors(self) -> int:
        """How many records could not be decoded and were skipped."""
        return self.store.counter(PROJECTION_ERRORS)


def _start(prefix: bytes, until_ms: int | None, cursor: str | None) -> bytes | None:
    starts: list[bytes] = []
    if until_ms is not None:
        if until_ms <= 0:
            return prefix + b"\xff"
        starts.append(prefix + started_rank(min(until_ms - 1, MAX_MS)).encode())
    if cursor is not None:
        if not _CURSOR.fullmatch(cursor):
            raise ValueError(f"invalid cursor {cursor!r}")
        starts.append(prefix + cursor.encode() + b"\x00")
    return max(starts) if starts else None


def _matches(row: RunRow, where: RunFilter) -> bool:
    status, agent, tenant = where.get("status"), where.get("agent"), where.get("tenant")
    orphaned = where.get("orphaned")
    return (
        (status is None or row.status == status)
        and (agent is None or row.agent == agent)
        and (tenant is None or row.tenant == tenant)
        and (orphaned is None or row.orphaned == orphaned)
    )
