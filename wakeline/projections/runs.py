"""The runs projection: one summary row per run, and an index of runs by start time.

Keys:

* ``run/<run_id>`` -> JSON row (see :func:`new_row`);
* ``idx/started/<9999999999999999 - started_ms:016d>/<run_id>`` -> ``b""``: key order is
  newest first.

A row is folded from two topics whose records interleave differently from one fold to the
next (events and notices are separate partitions).  So events only write the *event* fields,
notices only the *notice* fields (``drift``, ``rejection``, ``_noticed_ms``), and the fields
that depend on both (``status``, ``started_ms``, ``updated_ms``) are recomputed from them: the
row is the same whatever the interleaving.  Fields starting with ``_`` are internal.

``status``: the run's terminal event wins (``completed`` / ``failed`` / ``cancelled``); else
``drifted`` after a ``RunDrifted`` notice that no later ``RunResumed`` superseded; else
``rejected`` if a ``CommandRejected`` notice came for a run without events; else ``waiting``
when the open step with the highest seq is a timer; ``suspended`` (before ``waiting``) while
a gate, a budget, a policy or an in-doubt tool call waits for a person; else ``running``.
A rejected command of a run that has events (e.g. a late cancel) only sets ``rejection``.

``version``: the agent version that drives the run (``RunStarted``, then ``RunUpgraded``).
Whether a run is *orphaned* (no live worker hosts that version) is not folded: it depends on
the live workers, and :class:`~wakeline.projections.queries.Queries` adds it when it reads.
"""

from __future__ import annotations

from decimal import Context, Decimal
from typing import Any

from wakeline.projections import EVENTS, NOTICES
from wakeline.projections.store import BatchView, Decoded, JsonObject
from wakeline.schemas.commands import CommandRejected, Notice, RunDrifted, RunResumed
from wakeline.schemas.events import (
    BudgetExceeded,
    GateOpened,
    InDoubtResolved,
    ModelCallCompleted,
    ModelCallRequested,
    PolicyDenied,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
    RunUpgraded,
    StepRequested,
    TimerScheduled,
    ToolCallInDoubt,
    ToolCallRequested,
    ValueRecorded,
)
from wakeline.schemas.events import Event as JournalEvent
from wakeline.topics.port import Record

MAX_MS = 10**16 - 1
_DECIMAL = Context(prec=60)
_OPENERS: dict[type[Any], str] = {
    ModelCallRequested: "model",
    ToolCallRequested: "tool",
    StepRequested: "step",
    TimerScheduled: "timer",
    GateOpened: "gate",
    BudgetExceeded: "budget",
}
HUMAN_WAITS = frozenset({"gate", "budget", "policy", "in_doubt"})
"""Open steps that only a person can close: the run is ``suspended``."""


def run_key(run_id: str) -> bytes:
    return f"run/{run_id}".encode()


def started_prefix() -> bytes:
    return b"idx/started/"


def started_rank(started_ms: int) -> str:
    """The index component of ``started_ms``: sorts newest first."""
    return f"{MAX_MS - min(max(started_ms, 0), MAX_MS):016d}"


def started_key(started_ms: int, run_id: str) -> bytes:
    return f"idx/started/{started_rank(started_ms)}/{run_id}".encode()


def decimal_text(value: Decimal) -> str:
    """Exact, plain (no exponent) text of ``value``."""
    text = format(value.normalize(_DECIMAL), "f")
    return "0" if text in ("-0", "") else text


def new_row(run_id: str) -> JsonObject:
    return {
        "run_id": run_id,
        "agent": "",
        "version": "",
        "tenant": "",
        "command_id": "",
        "status": "running",
        "input": None,
        "output": None,
        "error": None,
        "cancelled_by": None,
        "drift": None,
        "rejection": None,
        "started_ms": None,
        "ended_ms": None,
        "updated_ms": 0,
        "last_seq": -1,
        "partition": None,
        "start_offset": None,
        "model_calls": 0,
        "tool_calls": 0,
        "steps": 0,
        "tokens": {"input": 0, "output": 0, "cached_input": 0, "cache_write": 0, "reasoning": 0},
        "cost_usd": "0",
        "unpriced_calls": 0,
        "estimated_calls": 0,
        "_outcome": None,
        "_open": {},
        "_first_event_ms": None,
        "_event_ms": 0,
        "_noticed_ms": None,
        "_notice_ms": 0,
    }


def status_of(row: JsonObject) -> str:
    if row["_outcome"] is not None:
        return str(row["_outcome"])
    drift = row["drift"]
    if drift is not None and drift["time_ms"] > (row.get("_resumed_ms") or -1):
        return "drifted"
    if row["last_seq"] < 0:
        return "rejected" if row["rejection"] is not None else "running"
    open_steps: dict[str, str] = row["_open"]
    if HUMAN_WAITS & set(open_steps.values()):
        return "suspended"
    if open_steps and open_steps[max(open_steps, key=int)] == "timer":
        return "waiting"
    return "running"


def _started_ms(row: JsonObject) -> int | None:
    first = row["_first_event_ms"]
    return first if first is not None else row["_noticed_ms"]  # type: ignore[no-any-return]


class RunsProjection:
    """Folds the events and notices topics into ``run/<run_id>`` rows."""

    name = "runs"
    topics = (EVENTS, NOTICES)

    def apply(self, view: BatchView, record: Record, decoded: Decoded) -> None:
        row = view.get_json(run_key(decoded.run_id)) or new_row(decoded.run_id)
        old_started = _started_ms(row)
        if isinstance(decoded, Notice):
            _fold_notice(row, decoded)
        else:
            _fold_event(row, record, decoded)
        row["status"] = status_of(row)
        row["started_ms"] = _started_ms(row)
        row["updated_ms"] = max(row["_event_ms"], row["_notice_ms"])
        _move_index(view, decoded.run_id, old_started, row["started_ms"])
        view.put_json(run_key(decoded.run_id), row)


def _move_index(view: BatchView, run_id: str, old: int | None, new: int | None) -> None:
    if old == new:
        return
    if old is not None:
        view.delete(started_key(old, run_id))
    if new is not None:
        view.put(started_key(new, run_id), b"")


def _fold_notice(row: JsonObject, notice: Notice) -> None:
    payload = notice.payload
    if isinstance(payload, RunDrifted):
        row["drift"] = {
            "seq": payload.seq,
            "recorded": payload.recorded,
            "requested": payload.requested,
            "message": payload.message,
            "time_ms": notice.time_ms,
        }
    elif isinstance(payload, RunResumed):
        row["_resumed_ms"] = max(row.get("_resumed_ms") or 0, notice.time_ms)
    elif isinstance(payload, CommandRejected):
        row["rejection"] = {
            "command_id": payload.command_id,
            "reason": payload.reason,
            "time_ms": notice.time_ms,
        }
    if row["_noticed_ms"] is None:
        row["_noticed_ms"] = notice.time_ms
    row["_notice_ms"] = max(row["_notice_ms"], notice.time_ms)


def _fold_event(row: JsonObject, record: Record, event: JournalEvent) -> None:
    if row["_first_event_ms"] is None:
        row["_first_event_ms"] = event.time_ms
    row["_event_ms"] = max(row["_event_ms"], event.time_ms)
    row["last_seq"] = max(row["last_seq"], event.seq)
    row["partition"] = record.partition
    payload = event.payload
    if isinstance(payload, RunStarted):
        row.update(
            agent=payload.agent,
            version=payload.version,
            tenant=payload.tenant,
            command_id=payload.command_id,
            input=payload.input,
            start_offset=record.offset,
            _fork_seq=payload.fork.seq if payload.fork is not None else -1,
        )
    elif isinstance(payload, RunUpgraded):
        row["version"] = payload.to_version
    elif isinstance(payload, RunCompleted | RunFailed | RunCancelled):
        _fold_end(row, event.time_ms, payload)
    else:
        _fold_step(row, event)


def _fold_end(
    row: JsonObject, time_ms: int, payload: RunCompleted | RunFailed | RunCancelled
) -> None:
    row["ended_ms"] = time_ms
    if isinstance(payload, RunCompleted):
        row["_outcome"] = "completed"
        row["output"] = payload.output
    elif isinstance(payload, RunFailed):
        row["_outcome"] = "failed"
        row["error"] = {"type": payload.error_type, "message": payload.message}
    else:
        row["_outcome"] = "cancelled"
        row["error"] = {"type": "cancelled", "message": payload.reason}
        row["cancelled_by"] = payload.by


def _fold_step(row: JsonObject, event: JournalEvent) -> None:
    payload = event.payload
    kind = _OPENERS.get(type(payload))
    if isinstance(payload, PolicyDenied):
        kind = "policy" if payload.suspend else None
    if isinstance(payload, ToolCallInDoubt):
        row["_open"][str(payload.step)] = "in_doubt"
        return
    if isinstance(payload, InDoubtResolved):
        if payload.resolution == "RETRY":
            row["_open"][str(payload.step)] = "tool"
        return
    if kind is not None:
        row["_open"][str(event.seq)] = kind
        row["steps"] += 1
        if kind == "model":
            row["model_calls"] += 1
        elif kind == "tool":
            row["tool_calls"] += 1
        return
    if isinstance(payload, ValueRecorded):
        row["steps"] += 1
        return
    step = getattr(payload, "step", None)
    if step is not None:
        row["_open"].pop(str(step), None)
    if isinstance(payload, ModelCallCompleted) and payload.step >= row.get("_fork_seq", -1):
        add_usage(row, payload)  # a fork's calls before its fork point cost the source


def add_usage(row: JsonObject, payload: ModelCallCompleted) -> None:
    """Add a completed call's tokens and cost (or one more unpriced call) to ``row``."""
    usage = payload.usage
    tokens = row["tokens"]
    tokens["input"] += usage.input_tokens
    tokens["output"] += usage.output_tokens
    tokens["cached_input"] += usage.cached_input_tokens
    tokens["cache_write"] += usage.cache_write_tokens
    tokens["reasoning"] += usage.reasoning_tokens
    if usage.estimated:
        row["estimated_calls"] = row.get("estimated_calls", 0) + 1
    if payload.cost_usd is None:
        row["unpriced_calls"] += 1
    else:
        total = _DECIMAL.add(Decimal(row["cost_usd"]), payload.cost_usd)
        row["cost_usd"] = decimal_text(total)
