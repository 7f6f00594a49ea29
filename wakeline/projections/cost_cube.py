"""The cost cube: spend per (UTC day, agent, tenant, model) cell, which answers filtered totals
(``GET /v1/costs``, :meth:`wakeline.Client.cost_summary`) by reading a few cells per day,
never the runs or their steps.

Folded by :class:`~wakeline.projections.costs.CostsProjection` (the same records, the same
batch).  Keys (components percent-encoded, so without ``/``):

* ``costcell/<day>/<agent>/<tenant>/<provider>/<model>`` -> JSON sums of the completed model
  calls of that cell, and ``runs``: the runs whose first call with that model is in the cell;
* ``costruns/<day>/<agent>/<tenant>`` -> the runs started that day (ASCII decimal).

A day is the UTC date of the event; so a filter by days counts the calls made on those days
and the runs started on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypedDict, Unpack
from urllib.parse import quote, unquote

from wakeline.projections.rows import CostLine, CostSummary, Tokens, load
from wakeline.projections.runs import add_usage, decimal_text
from wakeline.projections.store import BatchView, JsonObject, ProjectionStore, load_json
from wakeline.schemas.events import ModelCallCompleted

CELLS = b"costcell/"
RUNS = b"costruns/"


def _key(prefix: bytes, *names: str) -> bytes:
    return prefix + "/".join(quote(n, safe="") for n in names).encode()


def _names(key: bytes, prefix: bytes) -> list[str]:
    return [unquote(part) for part in key[len(prefix) :].decode().split("/")]


def count_run_start(view: BatchView, day: str, agent: str, tenant: str) -> None:
    view.incr(_key(RUNS, day, agent, tenant))


def add_to_cell(
    view: BatchView, names: tuple[str, str, str], payload: ModelCallCompleted, run: JsonObject
) -> bool:
    """Add the call to its cell (``names``: day, agent, tenant); counts the run in the cell if
    this is its first call with the model.  Returns whether ``run`` (its models) changed."""
    key = _key(CELLS, *names, payload.provider, payload.model)
    row = view.get_json(key) or _new_cell()
    row["model_calls"] += 1
    add_usage(row, payload)
    model = f"{payload.provider}/{payload.model}"
    models: list[str] = run.setdefault("models", [])
    first = model not in models
    if first:
        models.append(model)
        row["runs"] += 1
    view.put_json(key, row)
    return first


def _new_cell() -> JsonObject:
    tokens = {"input": 0, "output": 0, "cached_input": 0, "cache_write": 0, "reasoning": 0}
    return {"runs": 0, "model_calls": 0, "unpriced_calls": 0, "cost_usd": "0", "tokens": tokens}


@dataclass
class _Sum:
    runs: int = 0
    model_calls: int = 0
    tokens: Tokens = field(default_factory=Tokens)
    cost: Decimal = Decimal(0)
    unpriced: int = 0

    def add_cell(self, row: JsonObject) -> None:
        self.model_calls += row["model_calls"]
        self.tokens += load(Tokens, row["tokens"])
        self.cost += Decimal(row["cost_usd"])
        self.unpriced += row["unpriced_calls"]

    def line(self, key: str) -> CostLine:
        cost = decimal_text(self.cost)
        return CostLine(key, self.runs, self.model_calls, self.tokens, cost, self.unpriced)


@dataclass
class _Summary:
    total: _Sum = field(default_factory=_Sum)
    by_agent: dict[str, _Sum] = field(default_factory=dict)
    by_tenant: dict[str, _Sum] = field(default_factory=dict)
    by_model: dict[str, _Sum] = field(default_factory=dict)

    def summary(self) -> CostSummary:
        return CostSummary(
            self.total.line("total"),
            _lines(self.by_agent),
            _lines(self.by_tenant),
            _lines(self.by_model),
        )


def _lines(groups: dict[str, _Sum]) -> list[CostLine]:
    """Most expensive first, then by key."""
    ordered = sorted(groups.items(), key=lambda kv: (-kv[1].cost, kv[0]))
    return [total.line(key) for key, total in ordered]


class CostFilter(TypedDict, total=False):
    """Which calls a :func:`cost_summary` sums: of runs of ``agent`` / ``tenant``, on the UTC
    days from ``since_day`` to ``until_day`` (``yyyy-mm-dd``, inclusive)."""

    agent: str | None
    tenant: str | None
    since_day: str | None
    until_day: str | None


def cost_summary(store: ProjectionStore, **where: Unpack[CostFilter]) -> CostSummary:
    """Totals of the calls (and runs) ``where`` selects: in all, by agent, by tenant and by
    ``provider/model``."""
    out = _Summary()
    agent, tenant = where.get("agent"), where.get("tenant")
    since_day, until_day = where.get("since_day"), where.get("until_day")

    def wanted(names: list[str]) -> bool:
        return (agent is None or names[1] == agent) and (tenant is None or names[2] == tenant)

    for names, value in _days(store, CELLS, since_day, until_day):
        if wanted(names):
            row = load_json(value)
            _, run_agent, run_tenant, provider, model = names
            for group in (
                out.total,
                out.by_agent.setdefault(run_agent, _Sum()),
                out.by_tenant.setdefault(run_tenant, _Sum()),
            ):
                group.add_cell(row)
            per_model = out.by_model.setdefault(f"{provider}/{model}", _Sum())
            per_model.add_cell(row)
            per_model.runs += row["runs"]
    for names, value in _days(store, RUNS, since_day, until_day):
        if wanted(names):
            started = int(value)
            out.total.runs += started
            out.by_agent.setdefault(names[1], _Sum()).runs += started
            out.by_tenant.setdefault(names[2], _Sum()).runs += started
    return out.summary()


def _days(
    store: ProjectionStore, prefix: bytes, since_day: str | None, until_day: str | None
) -> Iterator[tuple[list[str], bytes]]:
    """The cells of ``prefix`` from ``since_day`` to ``until_day``, in key order."""
    start = None if since_day is None else _key(prefix, since_day)
    for key, value in store.scan(prefix, start=start):
        names = _names(key, prefix)
        if until_day is not None and names[0] > until_day:
            return
        yield names, value
