"""The costs projection: model spend and tokens by agent, tenant, model and UTC day.

A ``ModelCallCompleted`` counts for the agent and tenant of its run, which the run's
``RunStarted`` (its first event, on the same partition) names: the projection remembers them in
``costrun/<run_id>``.  A call of a run whose ``RunStarted`` was never folded counts for agent
and tenant ``""``.

Keys (each name component is percent-encoded with :func:`component`, so it holds no ``/``;
``<day>`` is the UTC date ``yyyy-mm-dd`` of the event's ``time_ms``):

* ``cost/agent/<agent>``, ``cost/tenant/<tenant>``, ``cost/model/<provider>/<model>``,
  ``cost/day/<day>``, ``cost/agent-day/<agent>/<day>``, ``cost/tenant-day/<tenant>/<day>``
  -> JSON row (see :func:`new_row`);
* ``costrun/<run_id>`` -> JSON ``{"agent": ..., "tenant": ..., "models": [...]}`` (the
  ``provider/model`` names the run has called).

The cost cube's cells (:mod:`wakeline.projections.cost_cube`) are folded here too.

Rows only hold sums (``cost_usd`` is an exact decimal string), so they do not depend on how the
partitions' records interleave: an incremental fold equals a fresh one.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Context
from urllib.parse import quote

from wakeline.projections import EVENTS
from wakeline.projections.cost_cube import add_to_cell, count_run_start
from wakeline.projections.rows import CostDimension, CostRow, load
from wakeline.projections.runs import add_usage
from wakeline.projections.store import (
    BatchView,
    Decoded,
    JsonObject,
    ProjectionStore,
    load_json,
)
from wakeline.schemas.commands import Notice
from wakeline.schemas.events import ModelCallCompleted, RunStarted
from wakeline.topics.port import Record

DIMENSIONS: dict[CostDimension, tuple[str, ...]] = {
    "agent": ("agent",),
    "tenant": ("tenant",),
    "model": ("provider", "model"),
    "day": ("day",),
    "agent-day": ("agent", "day"),
    "tenant-day": ("tenant", "day"),
}
"""Dimension -> the fields naming a row of it, in key order."""

_DAY_MS = 86_400_000
_DECIMAL = Context(prec=60)
_EPOCH = date(1970, 1, 1)


def component(name: str) -> str:
    """``name`` as one key component: percent-encoded, so without ``/``."""
    return quote(name, safe="")


def cost_key(dimension: CostDimension, *names: str) -> bytes:
    return ("cost/" + "/".join([dimension, *map(component, names)])).encode()


def run_key(run_id: str) -> bytes:
    return f"costrun/{run_id}".encode()


def utc_day(time_ms: int) -> str:
    """The UTC date (``yyyy-mm-dd``) of ``time_ms``, in exact integer arithmetic."""
    return (_EPOCH + timedelta(days=time_ms // _DAY_MS)).isoformat()


def new_row(dimension: CostDimension, names: tuple[str, ...]) -> JsonObject:
    row: JsonObject = {"dimension": dimension}
    row.update(zip(DIMENSIONS[dimension], names, strict=True))
    row.update(
        model_calls=0,
        unpriced_calls=0,
        estimated_calls=0,
        cost_usd="0",
        tokens={"input": 0, "output": 0, "cached_input": 0, "cache_write": 0, "reasoning": 0},
    )
    return row


class CostsProjection:
    """Folds the events topic into ``cost/<dimension>/...`` rows."""

    name = "costs"
    topics = (EVENTS,)

    def apply(self, view: BatchView, record: Record, decoded: Decoded) -> None:
        if isinstance(decoded, Notice):
            return
        payload = decoded.payload
        if isinstance(payload, RunStarted):
            run: JsonObject = {"agent": payload.agent, "tenant": payload.tenant}
            if payload.fork is not None:  # its calls before the fork point are the source's
                run["fork_seq"] = payload.fork.seq
            view.put_json(run_key(decoded.run_id), run)
            count_run_start(view, utc_day(decoded.time_ms), payload.agent, payload.tenant)
        elif isinstance(payload, ModelCallCompleted):
            run = view.get_json(run_key(decoded.run_id)) or {"agent": "", "tenant": ""}
            if payload.step < int(run.get("fork_seq", -1)):
                return
            agent, tenant, day = str(run["agent"]), str(run["tenant"]), utc_day(decoded.time_ms)
            targets: dict[CostDimension, tuple[str, ...]] = {
                "agent": (agent,),
                "tenant": (tenant,),
                "model": (payload.provider, payload.model),
                "day": (day,),
                "agent-day": (agent, day),
                "tenant-day": (tenant, day),
            }
            for dimension, names in targets.items():
                key = cost_key(dimension, *names)
                row = view.get_json(key) or new_row(dimension, names)
                add_call(row, payload)
                view.put_json(key, row)
            if add_to_cell(view, (day, agent, tenant), payload, run):
                view.put_json(run_key(decoded.run_id), run)


def add_call(row: JsonObject, payload: ModelCallCompleted) -> None:
    row["model_calls"] += 1
    add_usage(row, payload)


def costs(
    store: ProjectionStore, dimension: CostDimension, key: str | None = None
) -> list[CostRow]:
    """The rows of ``dimension`` in key order; with ``key``, those whose first name is ``key``
    (``costs(store, "agent-day", "alice")``: alice's days; ``"model", "openai"``: the openai
    models).  Raises ``ValueError`` for an unknown dimension."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown cost dimension {dimension!r}; one of {sorted(DIMENSIONS)}")
    if key is None:
        return [load(CostRow, load_json(v)) for _, v in store.scan(f"cost/{dimension}/".encode())]
    exact = cost_key(dimension, key)
    row = store.get_json(exact)
    rows = [] if row is None else [load(CostRow, row)]
    rows.extend(load(CostRow, load_json(v)) for _, v in store.scan(exact + b"/"))
    return rows
