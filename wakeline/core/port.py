"""The narrow protocol through which agent code (its :class:`~wakeline.core.context.Context`)
reaches its run's core."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

    from wakeline.core.app import App
    from wakeline.core.governance import RunLedger
    from wakeline.schemas.events import Event, EventPayload, Fork


class ContextPort(Protocol):
    """All a :class:`Context` may ask of its run's core."""

    @property
    def run_id(self) -> str: ...
    @property
    def app(self) -> App: ...
    @property
    def replaying(self) -> bool: ...
    @property
    def next_seq(self) -> int: ...
    @property
    def time_ms(self) -> int:
        """The activation's time."""

    @property
    def started_ms(self) -> int: ...
    @property
    def tenant(self) -> str: ...
    @property
    def fork(self) -> Fork | None:
        """Where the run was forked from, if it was (``RunStarted.fork``)."""

    @property
    def budget(self) -> RunLedger:
        """The run's own budget: what it has spent and reserved."""

    def recorded_next(self) -> EventPayload | None:
        """While replaying, the journaled event the code's next one must match; else None."""

    def entropy(self, n: int) -> bytes: ...
    def emit(self, payload: EventPayload, call: Any = None) -> Event:
        """Produce an event (checked against the journal while replaying)."""

    def wait(self, seq: int) -> asyncio.Future[Any]:
        """A future resolved with the result of the step opened at ``seq``."""

    def fail_run(self, error_type: str, message: str) -> BaseException:
        """Make the run fail: returns the exception to raise in agent code."""
