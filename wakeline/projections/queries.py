"""Read API over a projection store folded by the runs and steps projections."""

from __future__ import annotations

import re

from wakeline.projections.journal import is_seq_suffix
from wakeline.projections.runs import MAX_MS, run_key, started_prefix, started_rank
from wakeline.projections.steps import steps_prefix
from wakeline.projections.store import (
    PROJECTION_ERRORS,
    JsonObject,
    ProjectionStore,
    load_json,
)

_CURSOR = re.compile(r"\d{16}/.+", re.DOTALL)
_RANK_DIGITS = 16


def public(row: JsonObject) -> JsonObject:
    """``row`` without its internal (``_``-prefixed) fields."""
    return {key: value for key, value in row.items() if not key.startswith("_")}


class Queries:
    """Queries of runs and steps.  Rows are plain JSON-able dicts."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store

    def get_run(self, run_id: str) -> JsonObject | None:
        row = self.store.get_json(run_key(run_id))
        return None if row is None else public(row)

    def list_runs(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        tenant: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[JsonObject], str | None]:
        """Runs newest first (by ``started_ms``, then run id), ``since_ms <= started < until_ms``.

        Returns a page of at most ``limit`` rows and the cursor of the next page (``None`` when
        no further run matches).  Cursors are opaque strings.
        """
        if limit <= 0:
            raise ValueError("limit must be positive")
        prefix = started_prefix()
        stop_rank = None if since_ms is None else started_rank(since_ms)
        rows: list[JsonObject] = []
        last = ""
        for key, _ in self.store.scan(prefix, start=_start(prefix, until_ms, cursor)):
            suffix = key[len(prefix) :].decode()
            if stop_rank is not None and suffix[:_RANK_DIGITS] > stop_rank:
                break
            row = self.get_run(suffix[_RANK_DIGITS + 1 :])
            if row is None or not _matches(row, status, agent, tenant):
                continue
            if len(rows) == limit:
                return rows, last
            rows.append(row)
            last = suffix
        return rows, None

    def steps(self, run_id: str) -> list[JsonObject]:
        """The run's steps in seq order."""
        prefix = steps_prefix(run_id)
        return [load_json(v) for k, v in self.store.scan(prefix) if is_seq_suffix(k, prefix)]

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


def _matches(row: JsonObject, status: str | None, agent: str | None, tenant: str | None) -> bool:
    return (
        (status is None or row["status"] == status)
        and (agent is None or row["agent"] == agent)
        and (tenant is None or row["tenant"] == tenant)
    )
