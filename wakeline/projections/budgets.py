"""The budgets projection: the state of every shared budget of the ledger topic.

Each record of the ledger topic (:mod:`wakeline.ledger`) is folded with the ledger's own rule,
:meth:`wakeline.ledger.TenantState.apply`, in offset order: the rows agree with what every
worker decided.  Keys:

* ``budget/<ledger key>`` -> JSON row (see :func:`new_row`): ``limit`` (decimal string or
  ``None``), ``spent``, the reservations in flight (``reservations``: request id -> amount,
  their count ``in_flight`` and sum ``reserved``), ``committed`` (spent + reserved),
  ``grants`` / ``denials`` (decisions of ``Reserve`` records; a request sent again after a crash
  is granted again), ``settles``, ``errors`` (records whose amounts are not decimals: skipped),
  ``updated_ms`` (``time_ms`` of the last record) and who set the limit;
* ``budgetgrant/<ledger key, percent-encoded>/<request id>`` -> ``b""``: the requests ever
  granted.  :meth:`~wakeline.ledger.TenantState.apply` only asks whether *its* request was
  granted, so the state is rebuilt with that one id rather than the whole (growing) set.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from wakeline.ledger import TenantState
from wakeline.projections import LEDGER
from wakeline.projections.costs import component
from wakeline.projections.rows import BudgetRow, load
from wakeline.projections.runs import decimal_text
from wakeline.projections.store import BatchView, JsonObject, ProjectionStore, load_json
from wakeline.schemas.ledger import LedgerRecord, Reserve, SetLimit, Settle
from wakeline.topics.port import Record

_PREFIX = b"budget/"


def budget_key(ledger_key: str) -> bytes:
    return _PREFIX + ledger_key.encode()


def grant_key(ledger_key: str, request_id: str) -> bytes:
    return f"budgetgrant/{component(ledger_key)}/{request_id}".encode()


def new_row(ledger_key: str) -> JsonObject:
    return {
        "key": ledger_key,
        "limit": None,
        "limit_by": None,
        "limit_ms": None,
        "spent": "0",
        "reserved": "0",
        "committed": "0",
        "in_flight": 0,
        "reservations": {},
        "grants": 0,
        "denials": 0,
        "settles": 0,
        "errors": 0,
        "updated_ms": None,
    }


def state_of(row: JsonObject, granted: set[str] | None = None) -> TenantState:
    """The :class:`~wakeline.ledger.TenantState` of ``row`` (``granted``: the ids to know)."""
    limit = row["limit"]
    return TenantState(
        limit=None if limit is None else Decimal(limit),
        spent=Decimal(row["spent"]),
        active={rid: Decimal(usd) for rid, usd in row["reservations"].items()},
        granted=set() if granted is None else granted,
    )


class BudgetsProjection:
    """Folds the ledger topic into ``budget/<ledger key>`` rows."""

    name = "budgets"
    topics = (LEDGER,)

    def apply(self, view: BatchView, record: Record, decoded: object) -> None:
        if not isinstance(decoded, LedgerRecord):
            return
        key = budget_key(decoded.tenant)
        row = view.get_json(key) or new_row(decoded.tenant)
        row["updated_ms"] = decoded.time_ms
        payload = decoded.payload
        state = state_of(row, _known_grants(view, decoded))
        try:
            decision = state.apply(payload)
        except (InvalidOperation, ValueError):
            row["errors"] += 1
            view.put_json(key, row)
            return
        if isinstance(payload, Reserve) and decision is not None:
            row["grants" if decision.granted else "denials"] += 1
            if decision.granted:
                view.put(grant_key(decoded.tenant, payload.request_id), b"")
        elif isinstance(payload, Settle):
            row["settles"] += 1
        elif isinstance(payload, SetLimit):
            row.update(limit_by=payload.by, limit_ms=decoded.time_ms)
        _store_state(row, state)
        view.put_json(key, row)


def _known_grants(view: BatchView, entry: LedgerRecord) -> set[str]:
    """The granted request ids :meth:`TenantState.apply` may ask about for ``entry``."""
    payload = entry.payload
    if not isinstance(payload, Reserve):
        return set()
    if view.get(grant_key(entry.tenant, payload.request_id)) is not None:
        return {payload.request_id}
    return set()


def _store_state(row: JsonObject, state: TenantState) -> None:
    reserved = sum(state.active.values(), Decimal(0))
    row.update(
        limit=None if state.limit is None else decimal_text(state.limit),
        spent=decimal_text(state.spent),
        reserved=decimal_text(reserved),
        committed=decimal_text(state.spent + reserved),
        in_flight=len(state.active),
        reservations={rid: decimal_text(usd) for rid, usd in sorted(state.active.items())},
    )


def budget(store: ProjectionStore, ledger_key: str) -> BudgetRow | None:
    """The row of ``ledger_key`` (e.g. ``tenant:acme``), or ``None`` if the ledger has none."""
    row = store.get_json(budget_key(ledger_key))
    return None if row is None else budget_row(row)


def budgets(store: ProjectionStore) -> list[BudgetRow]:
    """Every budget row, in ledger key order."""
    return [budget_row(load_json(value)) for _, value in store.scan(_PREFIX)]


def budget_row(row: JsonObject) -> BudgetRow:
    """The stored ``row`` with the scope and the name its ledger key names."""
    scope, _, name = str(row["key"]).partition(":")
    return load(BudgetRow, {**row, "scope": scope, "name": name})
