"""The deterministic, I/O-free core of a run.

``RunCore`` maps *(journal so far, new input)* to *(events to append, effects to run)*.  It
never touches the log, a provider, a tool or the clock: the driver
(:mod:`wakeline.actors.driver`) owns those, feeds results in as events and appends what the
core returns before running any effect.

Every activation (start, recovery, one delivered result) runs the agent's coroutines on a
:class:`DeterministicLoop` until they are all blocked again.  While the journal still has
recorded events at the current sequence, whatever the code produces is checked against them
(:class:`NondeterminismError` on a mismatch) and the recorded event is used; past the end of
the journal the core is live and new events go to the outbox.  Results are delivered one at a
time in journal order, so replay re-creates exactly the interleaving of the original run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import ValidationError

from wakeline import jsonutil
from wakeline.core.app import AgentSpec, App, ToolSpec
from wakeline.core.errors import NondeterminismError, StopRun
from wakeline.core.governance import RunLedger
from wakeline.core.loop import DeterministicLoop
from wakeline.core.matching import describe, identity
from wakeline.schemas.events import (
    ANNOTATION_TYPES,
    RESULT_TYPES,
    TERMINAL_TYPES,
    BudgetExceeded,
    BudgetRaised,
    Event,
    EventPayload,
    GateOpened,
    GateResolved,
    InDoubtResolved,
    ModelCallCompleted,
    ModelCallDenied,
    ModelCallFailed,
    ModelCallInterrupted,
    ModelCallRequested,
    PolicyDenied,
    Resolution,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
    ToolCallCompleted,
    ToolCallInDoubt,
    ValueRecorded,
    opens_step,
)

ResultPayload = Any  # one of RESULT_TYPES


@dataclass(frozen=True, slots=True)
class Effect:
    """Something the driver must do once the events before it are durable."""

    seq: int
    request: Event
    call: Any = None
    """The live call object: a ModelRequest, a ToolSpec or a step function."""
    interrupted: tuple[int, ...] = ()
    """Model calls: the seqs of earlier attempts of this call that a crash interrupted (see
    ``ModelCallInterrupted``); their shared-budget reservations settle when this one does."""


@dataclass(slots=True)
class Transition:
    events: list[Event] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    in_doubt: list[Effect] = field(default_factory=list)
    """Open calls of non-idempotent tools found by recovery: never re-run automatically."""


def _explain(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "input"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


class RunCore:
    """One run's deterministic state machine.  Create, then call :meth:`begin` or
    :meth:`recover` once, then :meth:`deliver` for each result."""

    def __init__(
        self,
        run_id: str,
        app: App,
        *,
        journal: list[Event] | None = None,
        entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.run_id = run_id
        self.app = app
        self.journal: list[Event] = journal if journal is not None else []
        self.entropy = entropy
        self.drift: NondeterminismError | None = None
        self.replayed: list[Event] = []
        self.diverged: Event | None = None
        """The event the code produced where it parted from the journal (on drift)."""
        self.open: dict[int, Event] = {}
        self.calls: dict[int, Any] = {}
        self.time_ms = 0
        self.writer = ""
        self._cursor = 0
        self._loop = DeterministicLoop()  # type: ignore[abstract]  # only what tasks need
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._main: asyncio.Task[Any] | None = None
        self._spec: AgentSpec | None = None
        self._out: Transition = Transition()
        self._ended: Event | None = None
        self.started: RunStarted | None = None
        self.ledger = RunLedger(None)
        self.in_doubt: set[int] = set()
        self._failure: tuple[str, str] | None = None

    # -- status ----------------------------------------------------------------------------
    @property
    def terminal(self) -> Event | None:
        """The run's terminal event once the agent (or a cancel) reached it."""
        return self._ended

    @property
    def replaying(self) -> bool:
        return self._cursor < len(self.journal)

    @property
    def next_seq(self) -> int:
        return self._cursor

    # -- inputs ----------------------------------------------------------------------------
    def begin(self, started: RunStarted, time_ms: int, writer: str) -> Transition:
        """Start a new run: journal ``RunStarted`` and run the agent to its first wait."""
        if self.journal:
            raise RuntimeError(f"run {self.run_id} already has a journal")
        spec = self.app.get_agent(started.agent)
        if started.budget is None and spec is not None and spec.budget is not None:
            started = dataclasses.replace(started, budget=spec.budget)  # journal what applies
        self._activate(time_ms, writer)
        self._emit(started)
        self._start_agent(started)
        return self._finish()

    def recover(self, time_ms: int, writer: str) -> Transition:
        """Replay the whole journal, then continue live from its end.

        The transition's effects are the calls that were open at the end of the journal (sent
        but unanswered: the driver sends them again) plus anything new; ``in_doubt`` lists open
        calls of non-idempotent tools, which are never re-sent automatically.
        """
        if not self.journal or not isinstance(self.journal[0].payload, RunStarted):
            raise RuntimeError(f"run {self.run_id}: a journal must start with RunStarted")
        first = self.journal[0]
        assert isinstance(first.payload, RunStarted)
        self._activate(first.time_ms, first.writer)
        self._cursor = 1
        self._start_agent(first.payload)
        while self.drift is None and self.terminal is None and self._cursor < len(self.journal):
            event = self.journal[self._cursor]
            if not isinstance(event.payload, (*RESULT_TYPES, *ANNOTATION_TYPES, RunCancelled)):
                self._record_drift(self._cursor, describe(event.payload), "nothing (it waits)")
                break
            self._cursor += 1
            self._activate(event.time_ms, event.writer)
            if isinstance(event.payload, ANNOTATION_TYPES):
                self._apply_annotation(event.payload)
            else:
                self._apply_result(event)
        self._activate(time_ms, writer)
        if self.drift is None and self.terminal is None:
            self._reopen()
        return self._finish()

    def deliver(self, result: ResultPayload, time_ms: int, writer: str) -> Transition:
        """Journal the result of an open call and run the agent until it waits again."""
        if self.replaying:
            raise RuntimeError("deliver() before the journal was replayed")
        if self.terminal is not None or self.drift is not None:
            return Transition()
        step = int(result.step)
        if step not in self.open:
            raise KeyError(f"run {self.run_id}: no open call at seq {step}")
        self._activate(time_ms, writer)
        event = self._emit(result)
        self._apply_result(event)
        return self._finish()

    def resolve_gate(
        self, gate: str, approved: bool, by: str, reason: str, time_ms: int, writer: str
    ) -> Transition:
        """Approve or reject an open gate (by name, or the seq of a step waiting for a human)."""
        for seq, event in sorted(self.open.items()):
            payload = event.payload
            waiting = isinstance(payload, GateOpened) and payload.name == gate
            waiting = waiting or (isinstance(payload, PolicyDenied) and payload.policy == gate)
            if waiting or (str(seq) == gate and isinstance(payload, GateOpened | PolicyDenied)):
                return self.deliver(GateResolved(seq, approved, by, reason), time_ms, writer)
        raise LookupError(f"run {self.run_id} has no open gate {gate!r}")

    def raise_budget(
        self, metric: str, limit: str, by: str, time_ms: int, writer: str, scope: str = "run"
    ) -> Transition:
        """Raise a limit the run is waiting on; the waiting call is checked again."""
        for seq, event in sorted(self.open.items()):
            p = event.payload
            if isinstance(p, BudgetExceeded) and p.metric == metric and p.scope == scope:
                return self.deliver(BudgetRaised(seq, metric, limit, by, scope), time_ms, writer)
        raise LookupError(f"run {self.run_id} is not waiting on its {scope} {metric!r} budget")

    def resolve_in_doubt(
        self, step: int, resolution: Resolution, result: str, by: str, time_ms: int, writer: str
    ) -> Transition:
        """Resolve an in-doubt tool call: RETRY (same idempotency key), SUPPLY its result,
        or FAIL the run."""
        if step not in self.in_doubt:
            raise LookupError(f"run {self.run_id} has no in-doubt call at seq {step}")
        self._activate(time_ms, writer)
        self._emit(InDoubtResolved(step, resolution, by, result if resolution == "SUPPLY" else ""))
        self._apply_annotation(self.journal[-1].payload)
        if resolution == "RETRY":
            event = self.open[step]
            self._out.effects.append(Effect(step, event, self.calls.get(step)))
        elif resolution == "SUPPLY":
            self._apply_result(self._emit(ToolCallCompleted(step, result, 0)))
        return self._finish()

    def cancel(self, reason: str, by: str, time_ms: int, writer: str) -> Transition:
        if self.terminal is not None:
            return Transition()
        self._activate(time_ms, writer)
        self._emit(RunCancelled(reason=reason, by=by))
        self._stop_agent()
        return self._finish()

    # -- used by Context -------------------------------------------------------------------
    def emit(self, payload: EventPayload, call: Any = None) -> Event:
        """Produce an event from agent code (checked against the journal while replaying)."""
        event = self._emit(payload)
        if opens_step(payload):
            self.open[event.seq] = event
            self.calls[event.seq] = call
            if self._out.events and self._out.events[-1] is event:
                carried = self.ledger.interrupted_before(event.seq)
                self._out.effects.append(Effect(event.seq, event, call, carried))
        return event

    def fail_run(self, error_type: str, message: str) -> BaseException:
        """Make the run fail (policy denials): returns the exception to raise in agent code."""
        if self._failure is None:
            self._failure = (error_type, message)
        return StopRun()

    @property
    def waiting_on_humans(self) -> bool:
        """Every open step waits for a person (no timer, no call in flight): the run can be
        unloaded from memory until a command arrives."""
        if not self.open or self.terminal is not None:
            return False
        for seq, event in self.open.items():
            payload = event.payload
            human = isinstance(payload, BudgetExceeded | PolicyDenied) or seq in self.in_doubt
            human = human or (isinstance(payload, GateOpened) and payload.timeout_ms is None)
            if not human:
                return False
        return True

    def wait(self, seq: int) -> asyncio.Future[Any]:
        fut = self._loop.create_future()
        self._futures[seq] = fut
        return fut

    # -- internals -------------------------------------------------------------------------
    def _activate(self, time_ms: int, writer: str) -> None:
        self.time_ms = time_ms
        self.writer = writer

    def _emit(self, payload: EventPayload) -> Event:
        seq = self._cursor
        if seq < len(self.journal):
            recorded = self.journal[seq]
            if identity(recorded.payload) != identity(payload):
                self._record_drift(seq, describe(recorded.payload), describe(payload))
                self.diverged = Event(self.run_id, seq, recorded.time_ms, recorded.writer, payload)
                raise StopRun()
            if isinstance(payload, ValueRecorded):
                payload = recorded.payload  # the code read a value: the journal supplies it
            self.replayed.append(
                Event(self.run_id, seq, recorded.time_ms, recorded.writer, payload)
            )
            self._cursor += 1
            event = recorded
        else:
            event = Event(self.run_id, seq, self.time_ms, self.writer, payload)
            self.journal.append(event)
            self._cursor += 1
            self._out.events.append(event)
        if isinstance(payload, TERMINAL_TYPES):
            self._ended = event
        return event

    def _record_drift(self, seq: int, recorded: str, requested: str) -> None:
        if self.drift is None:
            self.drift = NondeterminismError(self.run_id, seq, recorded, requested)

    def _start_agent(self, started: RunStarted) -> None:
        from wakeline.core.context import Context

        spec = self.app.get_agent(started.agent)
        if spec is None:
            known = ", ".join(sorted(self.app.agents)) or "none"
            self._fail("UnknownAgent", f"no agent {started.agent!r} is registered (known: {known})")
            return
        try:
            value = spec.input_adapter.validate_json(started.input)
        except ValidationError as exc:
            self._fail("InvalidInput", f"input does not match {spec.name!r}: {_explain(exc)}")
            return
        self._spec = spec
        self.started = started
        self.ledger = RunLedger(started.budget)
        ctx = Context(self, spec)
        coro = cast(Coroutine[Any, Any, Any], spec.fn(ctx, value))
        self._main = self._loop.create_task(coro, name=f"agent:{self.run_id}")
        self._run()

    def _apply_result(self, event: Event) -> None:
        if isinstance(event.payload, RunCancelled):
            self._ended = event
            self._stop_agent()
            return
        assert isinstance(event.payload, RESULT_TYPES)
        step = event.payload.step
        if isinstance(event.payload, ModelCallCompleted | ModelCallFailed | ModelCallDenied):
            self.ledger.settle(step, event.payload)
        elif isinstance(event.payload, BudgetRaised) and event.payload.scope == "run":
            self.ledger.raise_limit(event.payload.metric, event.payload.limit)
        self.in_doubt.discard(step)
        self.open.pop(step, None)
        self.calls.pop(step, None)
        fut = self._futures.pop(step, None)
        if fut is None:
            self._record_drift(event.seq, describe(event.payload), "no call waiting for it")
            return
        fut.set_result(event.payload)
        self._run()

    def _run(self) -> None:
        self._loop.run_until_idle()
        main = self._main
        if main is None or not main.done() or self.drift is not None or self._ended:
            return
        exc = main.exception() if not main.cancelled() else None
        if isinstance(exc, StopRun):
            if self._failure is not None:
                self._fail(*self._failure)
            return
        if exc is not None:
            self._fail(type(exc).__name__, str(exc))
            return
        assert self._spec is not None
        try:
            output = self._spec.output_adapter.dump_python(main.result(), mode="json")
            text = jsonutil.dumps(output)
        except Exception as err:  # the agent returned something its type cannot serialize
            self._fail("InvalidOutput", f"output does not match {self._spec.name!r}: {err}")
            return
        self._emit_terminal(RunCompleted(output=text))

    def _fail(self, error_type: str, message: str) -> None:
        self._emit_terminal(RunFailed(error_type=error_type, message=message))

    def _emit_terminal(self, payload: EventPayload) -> None:
        with contextlib.suppress(StopRun):
            self._emit(payload)

    def _stop_agent(self) -> None:
        self._main = None
        self._futures.clear()
        self.open.clear()

    def _apply_annotation(self, payload: EventPayload) -> None:
        if isinstance(payload, ToolCallInDoubt):
            self.in_doubt.add(payload.step)
        elif isinstance(payload, InDoubtResolved):
            self.in_doubt.discard(payload.step)
            if payload.resolution == "FAIL":
                self._fail("ToolCallInDoubt", f"the in-doubt call at seq {payload.step} failed")
                self._stop_agent()

    def _reopen(self) -> None:
        """After recovery: open calls are sent again, except calls of non-idempotent tools,
        which may have run: those are in doubt and wait for a person.  An open model call may
        have reached the provider: it is closed as interrupted, and the agent's ``ctx.llm``
        sends it again as a new attempt, through the same budget checks as any call."""
        fresh = {e.seq for e in self._out.effects}
        for seq, event in sorted(self.open.items()):
            if seq in fresh or self.terminal is not None or self.drift is not None:
                continue
            call = self.calls.get(seq)
            payload = event.payload
            if isinstance(payload, ModelCallRequested):
                reason = "the worker stopped after the call was sent"
                interrupted = self._emit(ModelCallInterrupted(seq, payload.attempt, reason))
                self._apply_result(interrupted)
            elif isinstance(call, ToolSpec) and not call.idempotent:
                if seq not in self.in_doubt:
                    self._emit(ToolCallInDoubt(seq, "the worker stopped after the call was sent"))
                    self.in_doubt.add(seq)
                self._out.in_doubt.append(Effect(seq, event, call))
            else:
                self._out.effects.append(Effect(seq, event, call))

    def _finish(self) -> Transition:
        out, self._out = self._out, Transition()
        if self.terminal is not None:
            out.effects.clear()
        return out
