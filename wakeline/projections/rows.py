"""The read model: the frozen rows the queries of the projections return.

The projections fold the log into JSON rows in RocksDB (the stored format is theirs); a query
turns a stored row into one of these types with :func:`load`, and :func:`dump` turns a row back
into its JSON (the HTTP API's response bodies and the CLI's output are exactly that JSON).  The
client, the CLI and the API all return these same types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import astuple, dataclass, field, fields
from typing import Annotated, Any, Generic, Literal, TypeGuard, TypeVar, get_args

from pydantic import Field, SerializerFunctionWrapHandler, TypeAdapter, model_serializer

from wakeline.projections.store import JsonObject
from wakeline.schemas.budgets import BudgetScope, SharedScope
from wakeline.schemas.events import Resolution

R = TypeVar("R")
T = TypeVar("T")

RunStatus = Literal[
    "running", "waiting", "suspended", "completed", "failed", "cancelled", "drifted", "rejected"
]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
TERMINAL_STATUSES: frozenset[RunStatus] = frozenset({"completed", "failed", "cancelled"})

StepKind = Literal["model", "tool", "step", "timer", "value", "gate", "budget", "policy"]
StepStatus = Literal[
    "open",
    "completed",
    "failed",
    "fired",
    "recorded",
    "interrupted",
    "denied",
    "timed_out",
    "approved",
    "rejected",
    "raised",
    "in_doubt",
]
CostDimension = Literal["agent", "tenant", "model", "day", "agent-day", "tenant-day"]
"""The dimensions of the costs projection (:data:`wakeline.projections.costs.DIMENSIONS`)."""


def is_run_status(value: str) -> TypeGuard[RunStatus]:
    return value in RUN_STATUSES


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a query: its rows and the cursor of the next page (``None``: the last)."""

    items: tuple[T, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Tokens:
    input: int = 0
    output: int = 0
    cached_input: int = 0
    cache_write: int = 0
    reasoning: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a run did not complete (``type`` ``cancelled`` for a cancel)."""

    type: str
    message: str


@dataclass(frozen=True, slots=True)
class StepFailure(Failure):
    retriable: bool | None = None
    status_code: int | None = None


@dataclass(frozen=True, slots=True)
class Drift:
    """A ``RunDrifted`` notice: replay found different code at ``seq``."""

    seq: int
    recorded: str
    requested: str
    message: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """A ``CommandRejected`` notice about the run."""

    command_id: str
    reason: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run's summary row.  ``input`` and ``output`` are canonical JSON *text*."""

    run_id: str
    agent: str = ""
    version: str = ""
    """The version of the agent that drives the run (started with, or upgraded to)."""
    tenant: str = ""
    command_id: str = ""
    status: RunStatus = "running"
    input: str | None = None
    output: str | None = None
    error: Failure | None = None
    cancelled_by: str | None = None
    drift: Drift | None = None
    rejection: Rejection | None = None
    started_ms: int | None = None
    ended_ms: int | None = None
    updated_ms: int = 0
    last_seq: int = -1
    partition: int | None = None
    start_offset: int | None = None
    model_calls: int = 0
    tool_calls: int = 0
    steps: int = 0
    tokens: Tokens = field(default_factory=Tokens)
    cost_usd: str = "0"
    unpriced_calls: int = 0
    estimated_calls: int = 0
    """Model calls whose usage wakeline estimated (the provider reported none)."""
    orphaned: bool = False
    """Open, and no live worker hosts its agent version (workers announce the versions they
    host; set when the row is read, never folded)."""

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class InDoubtDecision:
    resolution: Resolution
    by: str


_KIND_FIELDS: Mapping[str, frozenset[str]] = {
    "gate": frozenset({"timeout_ms"}),
    "budget": frozenset({"target", "scope", "limit", "spent", "reservation"}),
    "policy": frozenset({"target", "reason"}),
}
_OPTIONAL_FIELDS = frozenset().union(*_KIND_FIELDS.values(), {"in_doubt", "resolution"})


@dataclass(frozen=True, slots=True)
class StepRow:
    """One step of a run; ``request`` and ``response`` are JSON *text*.

    The fields after ``error`` belong to some kinds of step only (``timeout_ms``: gates;
    ``target``, ``scope``, ``limit``, ``spent``, ``reservation``: budgets; ``target``,
    ``reason``: policies; ``in_doubt``, ``resolution``: tool calls that were in doubt) and are
    left out of the JSON of the other steps.
    """

    run_id: str
    seq: int
    kind: StepKind
    name: str
    status: StepStatus = "open"
    requested_ms: int | None = None
    completed_ms: int | None = None
    result_seq: int | None = None
    latency_us: int | None = None
    provider: str | None = None
    model: str | None = None
    response_model: str | None = None
    response_id: str | None = None
    finish_reason: str | None = None
    stream: bool | None = None
    usage: Tokens | None = None
    usage_estimated: bool = False
    """The provider reported no usage: wakeline estimated it (an offline tokenizer)."""
    cost_usd: str | None = None
    attempt: int | None = None
    idempotency_key: str | None = None
    idempotent: bool | None = None
    fire_at_ms: int | None = None
    duration_ms: int | None = None
    request: str | None = None
    response: str | None = None
    error: StepFailure | None = None
    timeout_ms: int | None = None
    target: str | None = None
    scope: BudgetScope | None = None
    limit: str | None = None
    spent: str | None = None
    reservation: str | None = None
    reason: str | None = None
    in_doubt: str | None = None
    resolution: InDoubtDecision | None = None

    @model_serializer(mode="wrap")
    def _json(self, handler: SerializerFunctionWrapHandler) -> JsonObject:
        out: JsonObject = handler(self)
        kept = _KIND_FIELDS.get(self.kind, frozenset())
        for name in _OPTIONAL_FIELDS - kept:
            if out.get(name, 0) is None:
                del out[name]
        return out

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> Any:
        """The schema of the fields (the serializer above only leaves some out)."""
        return handler({k: v for k, v in core_schema.items() if k != "serialization"})


@dataclass(frozen=True, slots=True)
class CostRow:
    """The sums of the completed model calls one row names (by ``dimension``: ``agent``;
    ``tenant``; ``provider`` and ``model``; ``day``; ``agent`` and ``day``; ``tenant`` and
    ``day``).  ``""`` is no tenant; ``day`` is the UTC date of the calls."""

    dimension: CostDimension
    agent: str | None = None
    tenant: str | None = None
    provider: str | None = None
    model: str | None = None
    day: Annotated[str | None, Field(description="UTC date, yyyy-mm-dd")] = None
    model_calls: int = 0
    unpriced_calls: Annotated[int, Field(description="model calls without a known price")] = 0
    estimated_calls: Annotated[
        int, Field(description="model calls whose usage wakeline estimated (none reported)")
    ] = 0
    cost_usd: Annotated[str, Field(description="exact decimal text, USD")] = "0"
    tokens: Tokens = field(default_factory=Tokens)


@dataclass(frozen=True, slots=True)
class CostLine:
    """Totals of one group of a :class:`CostSummary` (``key``: the agent, the tenant --
    ``""`` is no tenant -- or ``provider/model``)."""

    key: str
    runs: int = 0
    model_calls: int = 0
    tokens: Tokens = field(default_factory=Tokens)
    cost_usd: Annotated[str, Field(description="exact decimal text, USD")] = "0"
    unpriced_calls: Annotated[int, Field(description="model calls without a known price")] = 0


@dataclass(frozen=True, slots=True)
class CostSummary:
    """Spend of the runs a filter selects: in all and by agent, tenant and model (most
    expensive first), from the cost cube (:mod:`wakeline.projections.cost_cube`)."""

    total: CostLine
    by_agent: list[CostLine]
    by_tenant: list[CostLine]
    by_model: Annotated[list[CostLine], Field(description="key = provider/model")]


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """The state of a shared budget, folded from its ledger (amounts: exact decimal text, USD)."""

    key: Annotated[str, Field(description="the ledger key: tenant:<name> or agent:<name>")]
    scope: SharedScope
    name: str
    limit: Annotated[str | None, Field(description="null: no limit (spend is still tracked)")] = (
        None
    )
    limit_by: Annotated[str | None, Field(description="who set the limit")] = None
    limit_ms: int | None = None
    spent: Annotated[str, Field(description="settled spend")] = "0"
    reserved: Annotated[str, Field(description="sum of the reservations in flight")] = "0"
    committed: Annotated[str, Field(description="spent + reserved")] = "0"
    in_flight: Annotated[int, Field(description="reservations in flight")] = 0
    reservations: Annotated[
        Mapping[str, str], Field(description="request id -> reserved amount, in flight")
    ] = field(default_factory=dict)
    grants: int = 0
    denials: int = 0
    settles: int = 0
    errors: Annotated[
        int, Field(description="ledger records skipped: amounts that are not decimals")
    ] = 0
    updated_ms: Annotated[int | None, Field(description="time of the last ledger record")] = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One event of a run's hash chain, as it was first folded."""

    seq: int
    hash: Annotated[str, Field(description="sha256(previous hash + ':' + record_sha256)")]
    record_sha256: str
    partition: int
    offset: int
    type: str
    writer: str
    time_ms: int
    by: Annotated[
        str | None, Field(description="who decided (gates, budgets, in-doubt, cancel)")
    ] = None


@dataclass(frozen=True, slots=True)
class AuditProblem:
    seq: int
    offset: int | None
    type: str
    problem: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    run_id: str
    events: int
    problems: tuple[AuditProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems and self.events > 0


_ADAPTERS: dict[object, TypeAdapter[Any]] = {}


def adapter(kind: object) -> TypeAdapter[Any]:
    """The (cached) pydantic adapter of a row type."""
    found = _ADAPTERS.get(kind)
    if found is None:
        found = _ADAPTERS[kind] = TypeAdapter(kind)
    return found


def load(kind: type[R], data: Mapping[str, Any]) -> R:
    """The row of type ``kind`` a stored JSON row holds (fields starting ``_`` are internal and
    left out, as are any the type does not have)."""
    row: R = adapter(kind).validate_python(data)
    return row


def dump(row: object) -> JsonObject:
    """The JSON of a row of any of these types, or of a :class:`Page` of them."""
    if isinstance(row, Page):
        return {"items": [dump(item) for item in row.items], "next_cursor": row.next_cursor}
    out: JsonObject = adapter(type(row)).dump_python(row, mode="json")
    return out


def values(row: Any) -> dict[str, Any]:
    """The fields of a row dataclass, not converted (to build a row of a subclass)."""
    return {f.name: getattr(row, f.name) for f in fields(row)}
