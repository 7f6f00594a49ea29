"""The steps projection: one row per step of a run.

Key: ``step/<run_id>/<seq:012d>`` -> JSON row (see :func:`new_step`), where ``seq`` is the seq
of the event that opened the step (a ``*Requested`` event, ``TimerScheduled``, or the single
``ValueRecorded`` event of a value read).  Result events find their row by ``payload.step``.

``kind``: ``model`` | ``tool`` | ``step`` | ``timer`` | ``value``.  ``name``: the model, tool,
step name, timer purpose or value kind.  ``status``: ``open`` | ``completed`` | ``failed`` |
``fired`` | ``recorded`` | ``interrupted`` (a model call whose worker stopped after sending
it: it may have been billed; the call's next attempt is a new step).  JSON payloads stay JSON
*text*: ``request`` (model request, tool args), ``response`` (model message, tool / step
result; the value of a value read).
"""

from __future__ import annotations

import json

from wakeline.core.steps import BY_REQUEST, BY_RESULT, RESULT_TYPES
from wakeline.projections import EVENTS
from wakeline.projections.runs import decimal_text
from wakeline.projections.store import BatchView, Decoded, JsonObject
from wakeline.schemas.commands import Notice
from wakeline.schemas.events import (
    BudgetRaised,
    Event,
    GateResolved,
    InDoubtResolved,
    ModelCallCompleted,
    ModelCallDenied,
    ModelCallFailed,
    ModelCallInterrupted,
    StepCompleted,
    StepFailed,
    TimerFired,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallInDoubt,
    ValueRecorded,
)
from wakeline.topics.port import Record


def step_key(run_id: str, seq: int) -> bytes:
    return f"step/{run_id}/{seq:012d}".encode()


def steps_prefix(run_id: str) -> bytes:
    return f"step/{run_id}/".encode()


def new_step(run_id: str, seq: int, kind: str, name: str, requested_ms: int | None) -> JsonObject:
    return {
        "run_id": run_id,
        "seq": seq,
        "kind": kind,
        "name": name,
        "status": "open",
        "requested_ms": requested_ms,
        "completed_ms": None,
        "result_seq": None,
        "latency_us": None,
        "provider": None,
        "model": None,
        "response_model": None,
        "response_id": None,
        "finish_reason": None,
        "stream": None,
        "usage": None,
        "usage_estimated": False,
        "cost_usd": None,
        "attempt": None,
        "idempotency_key": None,
        "idempotent": None,
        "fire_at_ms": None,
        "duration_ms": None,
        "request": None,
        "response": None,
        "error": None,
    }


class StepsProjection:
    """Folds the events topic into ``step/<run_id>/<seq>`` rows."""

    name = "steps"
    topics = (EVENTS,)

    def apply(self, view: BatchView, record: Record, decoded: Decoded) -> None:
        if isinstance(decoded, Notice):
            return
        opened = _opened(decoded)
        if opened is not None:
            view.put_json(step_key(decoded.run_id, decoded.seq), opened)
            return
        payload = decoded.payload
        if isinstance(payload, ToolCallInDoubt | InDoubtResolved):
            _annotate(view, decoded.run_id, payload)
            return
        if not isinstance(payload, RESULT_TYPES):
            return
        key = step_key(decoded.run_id, payload.step)
        kind = BY_RESULT[type(payload)].name
        row = view.get_json(key) or new_step(decoded.run_id, payload.step, kind, "", None)
        _close(row, decoded)
        view.put_json(key, row)


def _opened(event: Event) -> JsonObject | None:
    """The row a step-opening event creates (from its row of the step-kind table), or ``None``
    for any other event.  A recorded value is shown as a step of kind ``value``."""
    p = event.payload
    if isinstance(p, ValueRecorded):
        row = new_step(event.run_id, event.seq, "value", p.kind, event.time_ms)
        row.update(status="recorded", response=p.value, completed_ms=event.time_ms)
        return row
    kind = BY_REQUEST.get(type(p))
    if kind is None:
        return None
    row = new_step(event.run_id, event.seq, kind.name, kind.label(p), event.time_ms)
    row.update(kind.shown(p))
    return row


def _annotate(view: BatchView, run_id: str, p: ToolCallInDoubt | InDoubtResolved) -> None:
    key = step_key(run_id, p.step)
    row = view.get_json(key) or new_step(run_id, p.step, "tool", "", None)
    if isinstance(p, ToolCallInDoubt):
        row.update(status="in_doubt", in_doubt=p.reason)
    else:
        row["resolution"] = {"resolution": p.resolution, "by": p.by}
        if p.resolution == "RETRY":
            row["status"] = "open"
    view.put_json(key, row)


def _close(row: JsonObject, event: Event) -> None:
    p = event.payload
    row["completed_ms"] = event.time_ms
    row["result_seq"] = event.seq
    latency = getattr(p, "latency_us", 0)
    if latency:
        row["latency_us"] = latency
    elif row["requested_ms"] is not None:
        row["latency_us"] = max(event.time_ms - row["requested_ms"], 0) * 1000
    if isinstance(p, ModelCallCompleted):
        _model_completed(row, p)
    elif isinstance(p, ToolCallCompleted | StepCompleted):
        row.update(status="completed", response=p.result)
    elif isinstance(p, TimerFired):
        row["status"] = "fired"
    elif isinstance(p, ModelCallDenied):
        row["status"] = "denied"
        row["error"] = _error(
            "BudgetExceeded",
            f"{p.scope} {p.metric} limit {p.limit}: spent {p.spent}, reservation {p.reservation}",
            None,
            None,
        )
    elif isinstance(p, GateResolved):
        row["status"] = "timed_out" if p.timed_out else "approved" if p.approved else "rejected"
        row["response"] = json.dumps({"by": p.by, "reason": p.reason})
    elif isinstance(p, BudgetRaised):
        row.update(status="raised", response=json.dumps({"limit": p.limit, "by": p.by}))
    elif isinstance(p, ModelCallFailed):
        row["status"] = "failed"
        row["error"] = _error(p.error_type, p.message, p.retriable, p.status_code)
    elif isinstance(p, ModelCallInterrupted):
        row["status"] = "interrupted"
        row["error"] = _error("ModelCallInterrupted", p.reason, True, None)
    elif isinstance(p, ToolCallFailed):
        row["status"] = "failed"
        row["error"] = _error(p.error_type, p.message, p.retriable, None)
    elif isinstance(p, StepFailed):
        row["status"] = "failed"
        row["error"] = _error(p.error_type, p.message, None, None)


def _model_completed(row: JsonObject, p: ModelCallCompleted) -> None:
    u = p.usage
    row.update(
        status="completed",
        provider=p.provider,
        model=p.model,
        response_model=p.response_model,
        response_id=p.response_id,
        finish_reason=p.finish_reason,
        response=p.message,
        cost_usd=None if p.cost_usd is None else decimal_text(p.cost_usd),
        usage={
            "input": u.input_tokens,
            "output": u.output_tokens,
            "cached_input": u.cached_input_tokens,
            "cache_write": u.cache_write_tokens,
            "reasoning": u.reasoning_tokens,
        },
        usage_estimated=u.estimated,
    )


def _error(
    error_type: str, message: str, retriable: bool | None, status_code: int | None
) -> JsonObject:
    return {
        "type": error_type,
        "message": message,
        "retriable": retriable,
        "status_code": status_code,
    }
