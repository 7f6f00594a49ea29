"""A run actor: one live run inside a worker.

It owns the run's :class:`RunCore` and processes one message at a time from its inbox -- a
result from an effect, or a command -- so a run's events are always appended in the order its
core produced them.  Each message becomes an activation of the core; the completion's events
are appended (and durable) before its effects are started: nothing external happens that the
journal does not show first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from wakeline.actors.effects import BudgetGate, run_effect
from wakeline.core import activation as act
from wakeline.core.activation import Activation, Completion, Effect, WaitingOnPeople
from wakeline.core.app import App
from wakeline.core.model import DeltaSink
from wakeline.core.run_core import RunCore
from wakeline.forking import Recorded
from wakeline.ledger import Ledger, ledger_key
from wakeline.schemas.events import (
    Event,
    GateOpened,
    RunStarted,
    TimerScheduled,
    ToolCallCompleted,
    ToolCallRequested,
)
from wakeline.telemetry.runtime import Telemetry
from wakeline.topics.port import OffsetCommit

log = logging.getLogger(__name__)


class ActorHost(Protocol):
    """What a run actor needs from its worker (the driver)."""

    @property
    def worker_id(self) -> str: ...

    @property
    def app(self) -> App: ...

    def now_ms(self) -> int: ...

    async def append_events(
        self, partition: int, events: list[Event], commit: OffsetCommit | None = None
    ) -> None: ...

    def delta_sink(self, run_id: str, seq: int) -> DeltaSink | None: ...

    @property
    def telemetry(self) -> Telemetry: ...

    @property
    def ledger(self) -> Ledger | None: ...

    def on_completion(self, actor: RunActor, completion: Completion) -> None: ...

    def actor_stopped(self, actor: RunActor, error: BaseException | None) -> None: ...


class ActorGone(LookupError):
    """The run actor stopped (its run ended, or it was unloaded or stopped) before it applied
    the command."""


@dataclass(slots=True)
class _Command:
    input: act.Command
    commit: OffsetCommit | None
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class RunActor:
    def __init__(
        self,
        core: RunCore,
        started: Event,
        partition: int,
        host: ActorHost,
        recorded: Recorded | None = None,
    ) -> None:
        self.core = core
        self.recorded = recorded or {}
        """A fork's source tool results it serves instead of running the tools (``tools=
        "recorded"``, :mod:`wakeline.forking`)."""
        self.started = started
        """The run's ``RunStarted`` event."""
        self.last: Completion | None = None
        """The core's last completion (its status is the run's)."""
        self.partition = partition
        self.host = host
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._effects: set[asyncio.Task[None]] = set()
        self._waits: set[asyncio.Task[None]] = set()  # timers, gate timeouts: see only_waits
        self._idle = False  # the loop waits for its next message
        self._task: asyncio.Task[None] | None = None
        self._gone: BaseException | None = None
        self.evicted = False
        """True once the actor unloaded itself because only people can move the run on."""

    @property
    def run_id(self) -> str:
        return self.core.run_id

    async def start(self, first: Completion, commit: OffsetCommit | None = None) -> None:
        """Append the first completion (start or recovery), then run the actor.  Register the
        actor only once this returned: if the append fails, no actor exists."""
        try:
            await self._commit(first, commit)
        except BaseException as exc:
            self._drain(exc)
            raise
        if self.finished:
            self._drain(ActorGone(f"run {self.run_id} has ended"))
            self.core.close()
            self.host.actor_stopped(self, None)
            return
        self._task = asyncio.create_task(self._loop(), name=f"run:{self.run_id}")

    def _idle_waiting_on_humans(self) -> bool:
        """Nothing in flight and only people can move the run on: unload it from memory."""
        busy = any(not t.done() for t in self._effects) or not self._inbox.empty()
        return not busy and self.last is not None and isinstance(self.last.status, WaitingOnPeople)

    def only_waits(self) -> bool:
        """Nothing in flight but timers (and gate timeouts), and the loop idle: stopping the
        actor now loses nothing, since a resume arms them again from the journal."""
        calls = any(not t.done() for t in self._effects - self._waits)
        return self._idle and self._inbox.empty() and not calls and not self.finished

    @property
    def finished(self) -> bool:
        return self.last is not None and self.last.finished

    @property
    def run_started(self) -> RunStarted:
        payload = self.started.payload
        assert isinstance(payload, RunStarted)
        return payload

    def _activation(self, input: act.Input) -> Activation:
        return Activation(input, self.host.now_ms(), self.host.worker_id)

    def command(self, input: act.Command, commit: OffsetCommit | None) -> Awaitable[None]:
        """Apply a command in the actor's order; the future resolves once it is durable, or
        fails with :class:`ActorGone` (or the actor's error) if the actor stops first."""
        message = _Command(input, commit)
        if self._gone is not None:
            message.done.set_exception(_copy(self._gone))
        else:
            self._inbox.put_nowait(message)
        return message.done

    async def stop(self) -> None:
        """Stop without writing anything (partition revoked or worker shutting down)."""
        for task in list(self._effects):
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, *self._effects, return_exceptions=True)
        self._drain(ActorGone(f"run {self.run_id}: its actor was stopped"))
        self.core.close()

    def _drain(self, reason: BaseException) -> None:
        """Fail every queued command: nothing may wait on an actor that is gone."""
        if self._gone is None:
            self._gone = reason
        while not self._inbox.empty():
            message = self._inbox.get_nowait()
            if isinstance(message, _Command) and not message.done.done():
                message.done.set_exception(_copy(reason))

    async def _loop(self) -> None:
        error: BaseException | None = None
        try:
            while not self.finished:
                if self._idle_waiting_on_humans():
                    self.evicted = True
                    break
                self._idle = True
                message = await self._inbox.get()
                self._idle = False
                if isinstance(message, _Command):
                    await self._apply_command(message)
                else:
                    completion = self.core.activate(self._activation(act.Deliver(message)))
                    await self._commit(completion)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            error = exc
        for task in list(self._effects):
            task.cancel()
        self._drain(error or ActorGone(f"run {self.run_id} has ended or was unloaded"))
        self.core.close()  # agent code still suspended cleans up now, on its own loop
        self.host.actor_stopped(self, error)

    async def _apply_command(self, message: _Command) -> None:
        try:
            completion = self.core.activate(self._activation(message.input))
        except LookupError as exc:  # no such gate / budget wait / in-doubt call: nothing changed
            message.done.set_exception(exc)
            return
        try:
            await self._commit(completion, message.commit)
        except BaseException as exc:
            if not message.done.done():
                gone = ActorGone(f"run {self.run_id}: its actor was stopped")
                message.done.set_exception(exc if isinstance(exc, Exception) else gone)
            raise
        if not message.done.done():
            message.done.set_result(None)

    async def _commit(self, completion: Completion, commit: OffsetCommit | None = None) -> None:
        self.last = completion
        events = list(completion.events)
        if events or commit is not None:
            await self.host.append_events(self.partition, events, commit)
            self.host.telemetry.appended([self.started], events)
        self.host.on_completion(self, completion)
        for effect in completion.effects:
            task = asyncio.create_task(self._run(effect), name=f"effect:{self.run_id}:{effect.seq}")
            self._effects.add(task)
            task.add_done_callback(self._effects.discard)
            if isinstance(effect.request.payload, (TimerScheduled, GateOpened)):
                self._waits.add(task)
                task.add_done_callback(self._waits.discard)

    def _budgets(self) -> BudgetGate | None:
        """The run's shared budgets: its tenant's (always tracked) and its agent's (when the
        agent has a limit)."""
        ledger, started = self.host.ledger, self.run_started
        if ledger is None:
            return None
        keys: list[tuple[str, str]] = []
        if started.tenant:
            keys.append(("tenant", ledger_key("tenant", started.tenant)))
        agent_key = ledger_key("agent", started.agent)
        if ledger.has_limit(agent_key):
            keys.append(("agent", agent_key))
        return BudgetGate(ledger, tuple(keys))

    async def _run(self, effect: Effect) -> None:
        call = effect.request.payload
        if isinstance(call, ToolCallRequested) and (call.tool, call.args_digest) in self.recorded:
            result = self.recorded[(call.tool, call.args_digest)]  # the fork's source's answer
            self._inbox.put_nowait(ToolCallCompleted(effect.seq, result, 0))
            return
        sink = self.host.delta_sink(self.run_id, effect.seq)
        tenant = self.run_started.tenant
        with self.host.telemetry.effect(effect, tenant) as record:
            result = await run_effect(
                self.host.app,
                effect,
                now_ms=self.host.now_ms,
                on_delta=sink,
                budgets=self._budgets(),
            )
            record(result)
        if result is not None:
            self._inbox.put_nowait(result)


def _copy(error: BaseException) -> BaseException:
    """A fresh exception of the same kind for each waiter (one instance must not be raised in
    several tasks: tracebacks would pile up on it)."""
    try:
        fresh = type(error)(*error.args)
    except Exception:
        return ActorGone(str(error))
    fresh.__cause__ = error
    return fresh
