"""Event-driven waits for tests: wait for what a run's journal shows, or for a worker to unload a
run, instead of sleeping and hoping the state changed.

Every wait follows the log (:meth:`wakeline.client.Client.watch`) or a signal of the worker and
returns as soon as what it waits for happened.  The timeout is only a safety net: when it
expires the wait fails with an :class:`AssertionError` naming the run, what was awaited and what
the run did instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from wakeline.schemas.commands import Notice
from wakeline.schemas.events import Event

if TYPE_CHECKING:
    from wakeline.client import Client
    from wakeline.projections.rows import RunRow

DEFAULT_TIMEOUT_S = 30.0

EventKind = type[Any] | tuple[type[Any], ...] | str | None
"""A payload class (``GateOpened``), a tuple of them, an event type name (``"GateOpened"``), or
``None`` for any event."""


def _kind_name(kind: EventKind) -> str:
    if kind is None:
        return "event"
    if isinstance(kind, str):
        return kind
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


def _matches(event: Event, kind: EventKind) -> bool:
    if kind is None:
        return True
    if isinstance(kind, str):
        return event.type == kind
    return isinstance(event.payload, kind)


def _describe(events: list[Event], notices: list[Notice]) -> str:
    seen = ", ".join(f"{e.seq}:{e.type}" for e in events[-12:]) or "none"
    if len(events) > 12:
        seen = f"... {seen}"
    text = f"events so far: [{seen}]"
    if notices:
        text += f"; notices: [{', '.join(type(n.payload).__name__ for n in notices)}]"
    return text


async def wait_for_event(
    client: Client,
    run_id: str,
    kind: EventKind,
    *,
    where: Callable[[Event], bool] | None = None,
    from_offset: int = 0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Event:
    """The run's first event of ``kind`` (for which ``where(event)`` holds, if given), as soon
    as the log shows it.  Fails if the run ends (or drifts, or its start is rejected) without
    one, or after ``timeout_s``."""
    what = _kind_name(kind) + (" matching the condition" if where is not None else "")

    def match(event: Event) -> bool:
        return _matches(event, kind) and (where is None or where(event))

    return await _follow(client, run_id, match, f"no {what}", from_offset, timeout_s)


async def wait_until_ended(
    client: Client,
    run_id: str,
    *,
    from_offset: int = 0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Event:
    """The run's terminal event (``RunCompleted``, ``RunFailed`` or ``RunCancelled``) as soon
    as the log shows it.  Fails if the run drifts or its start is rejected instead, or after
    ``timeout_s``."""

    def match(event: Event) -> bool:
        return event.is_terminal

    return await _follow(client, run_id, match, "no terminal event", from_offset, timeout_s)


async def _follow(
    client: Client,
    run_id: str,
    match: Callable[[Event], bool],
    missing: str,
    from_offset: int,
    timeout_s: float,
) -> Event:
    events: list[Event] = []
    notices: list[Notice] = []
    try:
        async with asyncio.timeout(timeout_s):
            async for update in client.watch(run_id, from_offset=from_offset):
                if update.notice is not None:
                    notices.append(update.notice)
                if update.event is not None:
                    events.append(update.event)
                    if match(update.event):
                        return update.event
    except TimeoutError:
        raise AssertionError(
            f"run {run_id}: {missing} within {timeout_s}s; {_describe(events, notices)}"
        ) from None
    ended = "ended" if events and events[-1].is_terminal else "stopped (drift or rejection)"
    raise AssertionError(f"run {run_id} {ended} with {missing}; {_describe(events, notices)}")


async def wait_status(
    client: Client, run_id: str, status: str, *, within_s: float = DEFAULT_TIMEOUT_S
) -> RunRow:
    """The run's row from ``client``'s views once its status is ``status``: checked again on
    every event or notice of the run the log shows, never by polling."""
    row = await client.get(run_id)
    try:
        async with asyncio.timeout(within_s):
            if row is not None and row.status == status:
                return row
            async for _update in client.watch(run_id):
                row = await client.get(run_id)
                if row is not None and row.status == status:
                    return row
    except TimeoutError:
        pass
    row = await client.get(run_id)
    if row is not None and row.status == status:
        return row
    got = None if row is None else row.status
    raise AssertionError(f"run {run_id} never became {status} (it is {got}): {row}")


class RunUnloads:
    """Every run the workers of this process unload from memory (their actor stopped with
    nothing in flight because only a person can move the run on), recorded as it happens.

    Create it *before* the runs it should see (``with RunUnloads(worker_id) as unloads:``);
    ``worker_id=None`` records the unloads of every worker in the process."""

    def __init__(self, worker_id: str | None = None) -> None:
        from wakeline.actors.owner import on_run_unloaded

        self.worker_id = worker_id
        self._counts: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._remove = on_run_unloaded(self._record)

    def _record(self, worker_id: str, partition: int, run_id: str) -> None:
        if self.worker_id is None or worker_id == self.worker_id:
            self._counts[run_id] = self._counts.get(run_id, 0) + 1
            self._changed.set()

    def count(self, run_id: str) -> int:
        """How many times ``run_id`` was unloaded so far."""
        return self._counts.get(run_id, 0)

    async def wait(
        self, run_id: str, *, times: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        """Return once ``run_id`` was unloaded ``times`` times in all (at once if it already
        was); fail after ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                while self.count(run_id) < times:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            worker = f"worker {self.worker_id}" if self.worker_id else "no worker"
            raise AssertionError(
                f"run {run_id}: {worker} unloaded it {self.count(run_id)} time(s), not "
                f"{times}, within {timeout_s}s"
            ) from None

    def close(self) -> None:
        self._remove()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
