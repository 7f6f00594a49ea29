"""Which version of its agent drives a run: the one ``RunStarted`` names, or the one the last
``RunUpgraded`` moved it to (see ``docs/versioning.md``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from wakeline.core.app import App
from wakeline.schemas.events import Event, RunStarted, RunUpgraded


def resolved_start(app: App, started: RunStarted) -> RunStarted:
    """``started`` as it is journaled: a start without a version takes the highest version
    ``app`` hosts; the version's code digest (informational) and default budget are added."""
    spec = app.get_agent(started.agent, started.version or None)
    if spec is None:
        return started  # the agent task fails the run: unknown agent
    started = dataclasses.replace(started, version=spec.version, code_digest=spec.code_digest)
    if started.budget is None and spec.budget is not None:
        started = dataclasses.replace(started, budget=spec.budget)
    return started


def driven_version(journal: Sequence[Event]) -> str:
    """The version of the agent that drives the run of ``journal`` (from its events)."""
    version = ""
    for event in journal:
        payload = event.payload
        if isinstance(payload, RunStarted):
            version = payload.version
        elif isinstance(payload, RunUpgraded):
            version = payload.to_version
    return version


def run_agent(journal: Sequence[Event]) -> tuple[str, str] | None:
    """``(agent, driven version)`` of a journal, ``None`` if it does not start a run."""
    if not journal or not isinstance(journal[0].payload, RunStarted):
        return None
    return journal[0].payload.agent, driven_version(journal)
