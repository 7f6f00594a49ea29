"""``UpgradeRun``: the owner of a run moves it to another version of its agent.

``wakeline runs upgrade`` replayed the run's journal up to ``checked_seq`` against the target
version's code with no divergence (:mod:`wakeline.upgrading`); here the owner journals
``RunUpgraded`` -- only if the run has not moved past ``checked_seq`` and has no call in flight
(it waits for a person, or on timers: its actor is stopped first and the resume arms them
again) -- and resumes it from its journal, now driven by the new version (if this worker does
not host it, the run is left for one that does: the group's assignment moves its partition,
see :mod:`wakeline.topics.hosting`).  A refusal is a ``CommandRejected`` notice that says why;
nothing is appended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wakeline.core.versions import run_agent
from wakeline.schemas.commands import Command, UpgradeRun
from wakeline.schemas.events import Event, RunUpgraded
from wakeline.topics.port import OffsetCommit

if TYPE_CHECKING:
    from wakeline.actors.dispatch import Dispatcher


async def upgrade(
    dispatch: Dispatcher, command: Command, payload: UpgradeRun, commit: OffsetCommit
) -> None:
    owner, s, run_id = dispatch.owner, dispatch.owner.shared, command.run_id
    loaded = run_id in owner.actors
    problem = await _problem(dispatch, run_id)
    events = [] if problem else await s.journal_sync.load(run_id, owner.partition)
    pair = run_agent(events)
    if problem is None and pair is None:
        problem = f"run {run_id} has no journal here"
    if problem is None and events[-1].seq != payload.checked_seq:
        problem = (
            f"run {run_id} moved on since the check (checked up to seq {payload.checked_seq},"
            f" it is at seq {events[-1].seq}): check it again"
        )
    if problem is not None or pair is None:
        await dispatch.refuse(command, problem or "", commit)
        if loaded and run_id not in owner.actors and dispatch.is_open(run_id):
            await dispatch.resume(run_id, None, "upgrade refused")  # its timers again
        return
    agent, version = pair
    upgraded = RunUpgraded(version, payload.to_version, payload.checked_seq, payload.by)
    event = Event(run_id, events[-1].seq + 1, s.now_ms(), s.worker_id, upgraded)
    await owner.append_events(owner.partition, [event], commit)
    owner.versions[run_id] = (agent, payload.to_version)
    await dispatch.resume(run_id, None, f"upgraded to version {payload.to_version!r}")


async def _problem(dispatch: Dispatcher, run_id: str) -> str | None:
    """Why the run cannot be upgraded now; a run waiting only on timers is unloaded first."""
    if not dispatch.is_open(run_id):
        return f"run {run_id} is not open"
    if not await dispatch.owner.unload_waiting(run_id):
        return (
            f"run {run_id} has a model, tool or step call in flight: upgrade it once its result"
            " is journaled"
        )
    return None
