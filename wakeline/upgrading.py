"""Replay-checked upgrades: move in-flight runs of an agent to another version of its code.

:func:`upgrade_runs` (``wakeline runs upgrade AGENT --to VERSION``, ``Client.upgrade``) takes
each open run of the agent driven by another version, replays its whole journal against the
target version's code with no provider reachable (:func:`wakeline.replay.replay_journal`, as
``wakeline regress`` does), and reports per run: *ok* (the new code reproduces every event,
byte for byte) or *diverged* (the first divergent seq, what the journal recorded there and
what the new code asks).  Unless ``dry_run``, each ok run gets an ``UpgradeRun`` command naming
the last seq checked; its owner journals ``RunUpgraded`` if the run has not moved on since and
waits for a person (else it refuses with a notice, reported here), and from then on the run is
driven by the new version (:mod:`wakeline.actors.upgrades`).  Diverged runs stay where they
are.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from wakeline.core.app import App
from wakeline.projections.queries import Queries
from wakeline.replay import Divergence, read_journal, replay_journal
from wakeline.schemas.commands import CommandRejected
from wakeline.schemas.events import RunUpgraded

if TYPE_CHECKING:
    from wakeline.client import Client

OUTCOME_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class UpgradeCheck:
    """One in-flight run checked against the target version (and, if sent, what became of
    the ``UpgradeRun``: ``"upgraded"`` or the owner's refusal)."""

    run_id: str
    from_version: str
    to_version: str
    checked_seq: int
    divergence: Divergence | None = None
    outcome: str = ""

    @property
    def ok(self) -> bool:
        return self.divergence is None

    def describe(self) -> str:
        moved = f"{self.run_id} ({self.from_version!r} -> {self.to_version!r})"
        if self.divergence is not None:
            return f"DIVERGED {moved} at seq {self.divergence.seq}\n" + _explain(self.divergence)
        done = f": {self.outcome}" if self.outcome else ""
        return f"ok       {moved}, replayed up to seq {self.checked_seq}{done}"


async def check_runs(
    client: Client, app: App, agent: str, to_version: str, queries: Queries | None = None
) -> list[UpgradeCheck]:
    """Every open run of ``agent`` on another version than ``to_version`` (from ``queries``,
    else the client's views), replayed against it; ``ValueError`` if ``app`` has no such
    version."""
    if app.get_agent(agent, to_version) is None:
        hosted = ", ".join(sorted(repr(v) for a, v in app.hosted() if a == agent)) or "none"
        raise ValueError(f"the app has no version {to_version!r} of {agent!r} (it has: {hosted})")
    if queries is None:
        queries = (await client.views()).queries
    runs = [r for r in queries.all_runs(agent=agent) if not r.ended]
    checks = []
    for row in sorted(runs, key=lambda r: r.run_id):
        if row.version == to_version:
            continue
        raw = await read_journal(client.log, row.run_id, topics=client.topics)
        report = replay_journal(app, row.run_id, raw, version=to_version)
        seq = len(raw) - 1
        checks.append(UpgradeCheck(row.run_id, row.version, to_version, seq, report.divergence))
    return checks


async def upgrade_runs(
    client: Client,
    app: App,
    agent: str,
    to_version: str,
    *,
    dry_run: bool = False,
    queries: Queries | None = None,
) -> list[UpgradeCheck]:
    """:func:`check_runs`; then, unless ``dry_run``, move the ok runs and wait for each owner's
    answer (``outcome``; ``"no answer yet"`` after :data:`OUTCOME_TIMEOUT_S`)."""
    checks = await check_runs(client, app, agent, to_version, queries)
    if dry_run:
        return checks
    sent = [
        (check, await client.upgrade_run(check.run_id, to_version, check.checked_seq))
        for check in checks
        if check.ok
    ]
    outcomes = await asyncio.gather(*(_outcome(client, c, command_id) for c, command_id in sent))
    moved = {c.run_id: replace(c, outcome=o) for (c, _), o in zip(sent, outcomes, strict=True)}
    return [moved.get(c.run_id, c) for c in checks]


async def _outcome(client: Client, check: UpgradeCheck, command_id: str) -> str:
    try:
        async with asyncio.timeout(OUTCOME_TIMEOUT_S):
            async for update in client.watch(check.run_id):
                done = update.event.payload if update.event is not None else None
                said = update.notice.payload if update.notice is not None else None
                if isinstance(done, RunUpgraded) and done.checked_seq == check.checked_seq:
                    return "upgraded"
                if isinstance(said, CommandRejected) and said.command_id == command_id:
                    return f"refused: {said.reason}"
    except TimeoutError:
        pass
    return "no answer yet (is a worker of the run's partition running?)"


def _explain(d: Divergence) -> str:
    recorded, replayed = d.recorded, d.replayed
    before, after = d.recorded_event, d.replayed_event
    if before is not None and after is not None:
        # a model call's prompt, not only its digest: show the requests themselves
        recorded = str(getattr(before.payload, "request", recorded))
        replayed = str(getattr(after.payload, "request", replayed))
        what = f"{before.type} / {after.type}, field {d.field}"
    else:
        what = f"field {d.field}"
    return f"  {what}\n  recorded: {_clip(recorded)}\n  new code: {_clip(replayed)}"


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
