"""The deterministic, I/O-free core of a run.

``RunCore.activate`` maps *(journal so far, one activation)* to a :class:`Completion`: the
events to append and the effects to run.  It never touches the log, a provider, a tool or the
clock: the driver (:mod:`wakeline.actors`) owns those, feeds results in as activations and
appends what the core returns before running any effect.

Every activation runs the agent's coroutines on a :class:`DeterministicLoop` until they are
all blocked again.  While the journal still has recorded events at the current sequence,
whatever the code produces is checked against them (:class:`NondeterminismError` on a
mismatch) and the recorded event is used; past the end of the journal the core is live and new
events go to the outbox.  Results are delivered one at a time in journal order, so replay
re-creates exactly the interleaving of the original run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import Any

from wakeline.core.activation import (
    Activation,
    Cancel,
    Completion,
    DecideGate,
    DecideInDoubt,
    Deliver,
    Drifted,
    Effect,
    Ended,
    Live,
    Outbox,
    RaiseLimit,
    Recover,
    Start,
    Status,
    WaitingOnPeople,
)
from wakeline.core.agent_task import AgentTask
from wakeline.core.app import App, ToolSpec
from wakeline.core.commands import gate_decision, limit_raised
from wakeline.core.errors import NondeterminismError, StopRun
from wakeline.core.governance import RunLedger
from wakeline.core.steps import ANNOTATION_TYPES, RESULT_TYPES, describe, identity, opens_step
from wakeline.core.steps import waits_for as step_waits_for
from wakeline.core.versions import driven_version, resolved_start
from wakeline.schemas.events import (
    TERMINAL_TYPES,
    BudgetRaised,
    Event,
    EventPayload,
    Fork,
    InDoubtResolved,
    ModelCallCompleted,
    ModelCallDenied,
    ModelCallFailed,
    ModelCallInterrupted,
    ModelCallRequested,
    RunCancelled,
    RunStarted,
    ToolCallCompleted,
    ToolCallInDoubt,
    ValueRecorded,
)

_STOPPED = "the worker stopped after the call was sent"


class RunCore:
    """One run's deterministic state machine.  Create it (with the journal so far, if any),
    then feed it activations: a :class:`Start` or :class:`Recover`, then results, commands."""

    def __init__(
        self,
        run_id: str,
        app: App,
        *,
        journal: list[Event] | None = None,
        entropy: Callable[[int], bytes] = os.urandom,
        version: str | None = None,  # drive a recovered journal as this version (upgrade check)
    ) -> None:
        self._run_id = run_id
        self._version = version
        self._app = app
        self._journal: list[Event] = list(journal) if journal is not None else []
        self._entropy = entropy
        self._cursor = 0
        self._time_ms = 0
        self._writer = ""
        self._open: dict[int, Event] = {}
        self._calls: dict[int, Any] = {}
        self._in_doubt: set[int] = set()
        self._ledger = RunLedger(None)
        self._started: RunStarted | None = None
        self._drift: NondeterminismError | None = None
        self._diverged: Event | None = None
        self._ended: Event | None = None
        self._out = Outbox()
        self._task = AgentTask(_Port(self))

    @property
    def run_id(self) -> str:
        return self._run_id

    # -- the one entry point ---------------------------------------------------------------
    def activate(self, activation: Activation) -> Completion:
        """Apply one activation and run the agent until all its tasks wait again.

        Raises :class:`LookupError` for a command that names nothing open (no such gate,
        budget wait or in-doubt call): the core is unchanged.
        """
        self._time_ms, self._writer = activation.time_ms, activation.writer
        match activation.input:
            case Start(started=started):
                self._start(started)
            case Recover(reopen=reopen):
                self._recover(reopen, activation)
            case _ if self._finished:
                pass  # a result or command after the end changes nothing
            case Deliver(result=result):
                self._deliver(result)
            case Cancel(reason=reason, by=by):
                self._emit(RunCancelled(reason=reason, by=by))
                self._stop_agent()
            case DecideGate() as gate:
                self._deliver(gate_decision(self._run_id, self._open, gate))
            case RaiseLimit() as raised:
                self._deliver(limit_raised(self._run_id, self._open, raised))
            case DecideInDoubt() as resolved:
                self._resolve_in_doubt(resolved)
        return self._complete()

    def close(self) -> None:
        """Drop the core: suspended agent code is cleaned up now (:meth:`AgentTask.close`)."""
        self._task.close()

    # -- inputs ----------------------------------------------------------------------------
    def _start(self, started: RunStarted) -> None:
        if self._journal:
            raise RuntimeError(f"run {self._run_id} already has a journal")
        started = resolved_start(self._app, started)  # version, digest, budget that apply
        self._emit(started)
        self._begin_agent(started)

    def _recover(self, reopen: bool, now: Activation) -> None:
        """Replay the whole journal, then (``reopen``) send again what was left open."""
        journal = self._journal
        if not journal or not isinstance(journal[0].payload, RunStarted):
            raise RuntimeError(f"run {self._run_id}: a journal must start with RunStarted")
        self._time_ms, self._writer = journal[0].time_ms, journal[0].writer
        self._cursor = 1
        version = self._version if self._version is not None else driven_version(journal)
        self._begin_agent(journal[0].payload, version)
        while not self._finished and self._cursor < len(journal):
            event = journal[self._cursor]
            if not isinstance(event.payload, (*RESULT_TYPES, *ANNOTATION_TYPES, RunCancelled)):
                self._record_drift(self._cursor, describe(event.payload), "nothing (it waits)")
                break
            self._cursor += 1
            self._time_ms, self._writer = event.time_ms, event.writer
            if isinstance(event.payload, ANNOTATION_TYPES):
                self._apply_annotation(event.payload)
            else:
                self._apply_result(event)
        self._time_ms, self._writer = now.time_ms, now.writer
        if reopen and not self._finished:
            self._reopen()

    def _deliver(self, result: Any) -> None:
        if self._cursor < len(self._journal):
            raise RuntimeError("a result was delivered before the journal was replayed")
        if int(result.step) not in self._open:
            raise KeyError(f"run {self._run_id}: no open call at seq {result.step}")
        self._apply_result(self._emit(result))

    def _resolve_in_doubt(self, command: DecideInDoubt) -> None:
        step, resolution = command.step, command.resolution
        if step not in self._in_doubt:
            raise LookupError(f"run {self._run_id} has no in-doubt call at seq {step}")
        supplied = command.result if resolution == "SUPPLY" else ""
        resolved = InDoubtResolved(step, resolution, command.by, supplied)
        self._apply_annotation(self._emit(resolved).payload)
        if resolution == "RETRY":
            self._out.effects.append(Effect(step, self._open[step], self._calls.get(step)))
        elif resolution == "SUPPLY":
            self._apply_result(self._emit(ToolCallCompleted(step, command.result, 0)))

    # -- what agent code reaches through its Context (see _Port) ---------------------------
    def _produce(self, payload: EventPayload, call: Any = None) -> Event:
        """An event from agent code (checked against the journal while replaying); a new
        step-opening event becomes an effect."""
        event = self._emit(payload)
        if opens_step(payload):
            self._open[event.seq] = event
            self._calls[event.seq] = call
            live = bool(self._out.events) and self._out.events[-1] is event
            if live and step_waits_for(payload) != "person":
                carried = self._ledger.interrupted_before(event.seq)
                self._out.effects.append(Effect(event.seq, event, call, carried))
        return event

    # -- internals -------------------------------------------------------------------------
    @property
    def _finished(self) -> bool:
        return self._ended is not None or self._drift is not None

    def _emit(self, payload: EventPayload) -> Event:
        seq = self._cursor
        if seq < len(self._journal):
            recorded = self._journal[seq]
            if identity(recorded.payload) != identity(payload):
                self._record_drift(seq, describe(recorded.payload), describe(payload))
                self._diverged = Event(
                    self._run_id, seq, recorded.time_ms, recorded.writer, payload
                )
                raise StopRun()
            if isinstance(payload, ValueRecorded):
                payload = recorded.payload  # the code read a value: the journal supplies it
            replayed = Event(self._run_id, seq, recorded.time_ms, recorded.writer, payload)
            self._out.replayed.append(replayed)
            event = recorded
        else:
            event = Event(self._run_id, seq, self._time_ms, self._writer, payload)
            self._journal.append(event)
            self._out.events.append(event)
        self._cursor += 1
        if isinstance(payload, TERMINAL_TYPES):
            self._ended = event
        return event

    def _record_drift(self, seq: int, recorded: str, requested: str) -> None:
        if self._drift is None:
            self._drift = NondeterminismError(self._run_id, seq, recorded, requested)

    def _begin_agent(self, started: RunStarted, version: str | None = None) -> None:
        self._started = started
        self._ledger = RunLedger(started.budget)
        self._task.begin(started, started.version if version is None else version)

    def _apply_result(self, event: Event) -> None:
        payload = event.payload
        if isinstance(payload, RunCancelled):
            self._ended = event
            self._stop_agent()
            return
        assert isinstance(payload, RESULT_TYPES)
        step = payload.step
        if isinstance(payload, ModelCallCompleted | ModelCallFailed | ModelCallDenied):
            self._ledger.settle(step, payload)
        elif isinstance(payload, BudgetRaised) and payload.scope == "run":
            self._ledger.raise_limit(payload.metric, payload.limit)
        self._in_doubt.discard(step)
        self._open.pop(step, None)
        self._calls.pop(step, None)
        if not self._task.resume(step, payload):
            self._record_drift(event.seq, describe(payload), "no call waiting for it")

    def _stop_agent(self) -> None:
        self._task.stop()
        self._open.clear()

    def _apply_annotation(self, payload: EventPayload) -> None:
        if isinstance(payload, ToolCallInDoubt):
            self._in_doubt.add(payload.step)
        elif isinstance(payload, InDoubtResolved):
            self._in_doubt.discard(payload.step)
            if payload.resolution == "FAIL":
                self._task.end_failed(
                    "ToolCallInDoubt", f"the in-doubt call at seq {payload.step} failed"
                )
                self._stop_agent()

    def _reopen(self) -> None:
        """After recovery: open calls are sent again, except calls of non-idempotent tools,
        which may have run: those are in doubt and wait for a person.  An open model call may
        have reached the provider: it is closed as interrupted, and the agent's ``ctx.llm``
        sends it again as a new attempt, through the same budget checks as any call."""
        fresh = {e.seq for e in self._out.effects}
        for seq, event in sorted(self._open.items()):
            if seq in fresh or self._finished:
                continue
            call = self._calls.get(seq)
            payload = event.payload
            if isinstance(payload, ModelCallRequested):
                self._apply_result(self._emit(ModelCallInterrupted(seq, payload.attempt, _STOPPED)))
            elif isinstance(call, ToolSpec) and not call.idempotent:
                if seq not in self._in_doubt:
                    self._emit(ToolCallInDoubt(seq, _STOPPED))
                    self._in_doubt.add(seq)
                self._out.in_doubt.append(Effect(seq, event, call))
            elif step_waits_for(payload) != "person":
                self._out.effects.append(Effect(seq, event, call))

    def _waiting(self) -> tuple[Event, ...]:
        return tuple(
            event
            for seq, event in sorted(self._open.items())
            if seq in self._in_doubt or step_waits_for(event.payload) == "person"
        )

    def _status(self, waiting: tuple[Event, ...]) -> Status:
        if self._drift is not None:
            return Drifted(self._drift, self._diverged)
        if self._ended is not None:
            return Ended(self._ended)
        if self._open and len(waiting) == len(self._open):
            return WaitingOnPeople()
        return Live()

    def _complete(self) -> Completion:
        out, self._out = self._out, Outbox()
        waiting = self._waiting() if not self._finished else ()
        return Completion(
            events=tuple(out.events),
            effects=() if self._ended is not None else tuple(out.effects),
            in_doubt=tuple(out.in_doubt),
            status=self._status(waiting),
            waiting=waiting,
            spent=dict(self._ledger.spent),
            replayed=tuple(out.replayed),
        )


class _Port:
    """What a core's agent task and Context see of it (``ContextPort``); never the driver."""

    def __init__(self, core: RunCore) -> None:
        self._core = core

    @property
    def run_id(self) -> str:
        return self._core._run_id

    @property
    def app(self) -> App:
        return self._core._app

    @property
    def replaying(self) -> bool:
        return self._core._cursor < len(self._core._journal)

    @property
    def next_seq(self) -> int:
        return self._core._cursor

    @property
    def time_ms(self) -> int:
        return self._core._time_ms

    @property
    def started_ms(self) -> int:
        core = self._core
        return core._journal[0].time_ms if core._journal else core._time_ms

    @property
    def tenant(self) -> str:
        started = self._core._started
        return started.tenant if started is not None else ""

    @property
    def fork(self) -> Fork | None:
        return self._core._started.fork if self._core._started is not None else None

    @property
    def budget(self) -> RunLedger:
        return self._core._ledger

    @property
    def finished(self) -> bool:
        return self._core._finished

    def recorded_next(self) -> EventPayload | None:
        core = self._core
        return core._journal[core._cursor].payload if core._cursor < len(core._journal) else None

    def entropy(self, n: int) -> bytes:
        return self._core._entropy(n)

    def emit(self, payload: EventPayload, call: Any = None) -> Event:
        if self._core._task.closed:  # agent code cleaning up after the core was dropped
            raise StopRun()
        return self._core._produce(payload, call)

    def wait(self, seq: int) -> asyncio.Future[Any]:
        return self._core._task.wait(seq)

    def fail_run(self, error_type: str, message: str) -> BaseException:
        return self._core._task.fail_run(error_type, message)

    def emit_terminal(self, payload: EventPayload) -> None:
        with contextlib.suppress(StopRun):  # drift: recorded by the core
            self._core._emit(payload)


__all__ = ["Activation", "Completion", "Effect", "RunCore"]
