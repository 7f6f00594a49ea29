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


def versioned(app: App, started: RunStarted) -> RunStarted:
    """``started`` with the version that drives it and its code digest (a fork's start)."""
    spec = app.get_agent(started.agent, started.version or None)
    if spec is None:
        return started
    return dataclasses.replace(started, version=spec.version, code_digest=spec.code_digest)


def start_problem(app: App, started: RunStarted) -> str | None:
    """Why a worker of ``app`` must not start ``started``: a version of a known agent that it
    does not host (an unknown agent is started and fails, as ever)."""
    known = app.get_agent(started.agent) is not None
    if started.version and known and app.get_agent(started.agent, started.version) is None:
        return unhosted(app, started.agent, started.version)
    return None


def unhosted(app: App, agent: str, version: str) -> str:
    hosted = sorted(v for name, v in app.hosted() if name == agent)
    shown = ", ".join(repr(v) for v in hosted) or "none"
    return f"version {version!r} of agent {agent!r} is not hosted here (hosted: {shown})"


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
