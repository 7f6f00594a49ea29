"""Driving a run's core in tests: a fake clock, a driver that keeps the journal, and an
always-replay mode.

:class:`CoreDriver` feeds a :class:`~wakeline.core.run_core.RunCore` activations the way a
worker does -- at the fake clock's time, as a named writer -- and appends what each completion
produces to its journal, so tests read the journal and the last completion, never the core's
state.  :meth:`CoreDriver.crash` is a process dying: a fresh core recovers from the journal.

With ``always_replay=True`` every activation is also applied to a *fresh* core that first
replays the whole journal so far from scratch: it must produce exactly the same events (the
same bytes) and the same effects, or :class:`ReplayMismatch` is raised.  Use deterministic
entropy in that mode (the default, all zero bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wakeline.actors.effects import run_effect
from wakeline.core import activation as act
from wakeline.core.app import App
from wakeline.core.model import DeltaSink
from wakeline.core.run_core import RunCore
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import Event, RunStarted

__all__ = ["CoreDriver", "FakeClock", "ReplayMismatch"]


def zero_entropy(n: int) -> bytes:
    return bytes(n)


@dataclass(slots=True)
class FakeClock:
    """Epoch milliseconds that move only when an activation is made (by ``step_ms``) or when
    a test says so (:meth:`advance`)."""

    now_ms: int = 1_000
    step_ms: int = 7

    def tick(self) -> int:
        self.now_ms += self.step_ms
        return self.now_ms

    def advance(self, ms: int) -> int:
        self.now_ms += ms
        return self.now_ms


class ReplayMismatch(AssertionError):
    """Always-replay mode: a fresh replay of the journal produced something else."""


class CoreDriver:
    def __init__(
        self,
        run_id: str,
        app: App,
        *,
        journal: list[Event] | None = None,
        writer: str = "w1",
        clock: FakeClock | None = None,
        entropy: Callable[[int], bytes] = zero_entropy,
        always_replay: bool = False,
    ) -> None:
        self.run_id, self.app, self.writer = run_id, app, writer
        self.journal: list[Event] = list(journal or [])
        self.clock = clock or FakeClock()
        self.entropy = entropy
        self.always_replay = always_replay
        self.last: act.Completion | None = None
        self._core = RunCore(run_id, app, journal=list(self.journal), entropy=entropy)
        self._begun = False

    # -- activations -----------------------------------------------------------------------
    def start(self, started: RunStarted) -> act.Completion:
        return self.activate(act.Start(started))

    def recover(self, *, reopen: bool = True) -> act.Completion:
        return self.activate(act.Recover(reopen))

    def deliver(self, result: object) -> act.Completion:
        return self.activate(act.Deliver(result))

    def activate(self, input: act.Input) -> act.Completion:
        activation = act.Activation(input, self.clock.tick(), self.writer)
        before = list(self.journal)
        completion = self._core.activate(activation)
        if self.always_replay and self._begun:
            _check_fresh_replay(self.run_id, self.app, self.entropy, before, activation, completion)
        self._begun = True
        self.journal.extend(completion.events)
        self.last = completion
        return completion

    async def drive(
        self, completion: act.Completion, *, on_delta: DeltaSink | None = None
    ) -> act.Completion:
        """Run ``completion``'s effects one at a time, in order, delivering each result (and
        running the effects it leads to) until none is left; returns the last completion."""
        pending = list(completion.effects)
        while pending:
            result = await run_effect(self.app, pending.pop(0), now_ms=lambda: 0, on_delta=on_delta)
            completion = self.deliver(result)
            pending += completion.effects
        return completion

    def crash(self, *, writer: str = "w2", app: App | None = None) -> CoreDriver:
        """The process died: a new driver whose fresh core has only the journal."""
        return CoreDriver(
            self.run_id,
            app or self.app,
            journal=self.journal,
            writer=writer,
            clock=self.clock,
            entropy=self.entropy,
            always_replay=self.always_replay,
        )

    # -- what tests read -------------------------------------------------------------------
    @property
    def status(self) -> act.Status | None:
        return self.last.status if self.last is not None else None

    @property
    def terminal(self) -> Event | None:
        status = self.status
        return status.terminal if isinstance(status, act.Ended) else None

    @property
    def drift(self) -> act.Drifted | None:
        status = self.status
        return status if isinstance(status, act.Drifted) else None


def _check_fresh_replay(
    run_id: str,
    app: App,
    entropy: Callable[[int], bytes],
    journal: list[Event],
    activation: act.Activation,
    expected: act.Completion,
) -> None:
    fresh = RunCore(run_id, app, journal=list(journal), entropy=entropy)
    try:
        caught_up = fresh.activate(act.Activation(act.Recover(reopen=False), 0, "replay"))
        if caught_up.events or isinstance(caught_up.status, act.Drifted):
            raise ReplayMismatch(f"run {run_id}: replaying {len(journal)} events changed the run")
        again = fresh.activate(activation)
    finally:
        fresh.close()
    codec = event_codec()
    if [codec.encode(e) for e in again.events] != [codec.encode(e) for e in expected.events]:
        raise ReplayMismatch(
            f"run {run_id}: a fresh replay produced other events for {activation.input}"
        )
    if _effects(again) != _effects(expected) or again.status != expected.status:
        raise ReplayMismatch(f"run {run_id}: a fresh replay produced other effects or status")


def _effects(completion: act.Completion) -> list[tuple[int, Event, tuple[int, ...]]]:
    return [(e.seq, e.request, e.interrupted) for e in completion.effects]
