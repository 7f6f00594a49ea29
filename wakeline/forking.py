"""Forks: a new run that reuses a recorded run's journal up to a step, then runs live.

``wakeline fork RUN --at SEQ [--model M]`` (``Client.fork``) starts a run of the same agent
and input whose journal before ``SEQ`` is ``RUN``'s, copied by the worker that starts it
(``RunStarted.fork`` names the source): the agent code replays those events, so nothing before
``SEQ`` is sent to a provider or a tool again, and their cost stays the source's (the cost
projections count a fork's calls from ``SEQ`` on only).  From ``SEQ`` the run is live, with
``model`` as the model of its model calls if given, with ``prompt`` (if given) as the system
prompt of its model calls (it replaces their system messages, or comes first if they have
none; what is journaled is the request as sent), and with ``tools="recorded"`` a tool call
that matches one of the source's from ``SEQ`` on (tool and arguments) gets the source's result
instead of running.  ``SEQ`` must be a model or tool call of the source with nothing else in
flight when it was made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict, Unpack

from wakeline.core.steps import RESULT_TYPES, opens_step
from wakeline.core.versions import driven_version
from wakeline.replay import read_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.commands import StartRun
from wakeline.schemas.events import (
    Event,
    Fork,
    ModelCallRequested,
    RunStarted,
    ToolCallCompleted,
    ToolCallRequested,
)
from wakeline.topics.port import Log
from wakeline.topics.specs import Topics

Recorded = dict[tuple[str, str], str]
"""A source's tool results by ``(tool, arguments digest)``."""

MAX_PROMPT_CHARS = 100_000
"""The longest system prompt a fork may be given (a start command stays far below the 1 MB a
worker decodes)."""


class ForkEdits(TypedDict, total=False):
    """What a fork changes from its fork point on (:func:`fork_command`)."""

    model: str
    """The model of its model calls ("": the source's)."""
    tools: str
    """"live" (the default), or "recorded": a tool call that matches one of the source's
    gets its result instead of running."""
    prompt: str
    """The system prompt of its model calls ("": the source's)."""


class ForkError(ValueError):
    """The source run or the fork point cannot be forked; the message says why."""


def fork_point(source: Sequence[Event], at: int) -> RunStarted:
    """The source's ``RunStarted``, once ``at`` is checked as a fork point of ``source``."""
    if not source or not isinstance(source[0].payload, RunStarted):
        raise ForkError("the source run has no journal")
    run_id = source[0].run_id
    if not 0 < at < len(source):
        raise ForkError(f"run {run_id} has no seq {at} (its journal has {len(source)} events)")
    if not isinstance(source[at].payload, ModelCallRequested | ToolCallRequested):
        raise ForkError(f"seq {at} of run {run_id} is not a model or tool call")
    opened = {e.seq for e in source[:at] if opens_step(e.payload)}
    closed = {e.payload.step for e in source[:at] if isinstance(e.payload, RESULT_TYPES)}
    if opened - closed:
        waiting = ", ".join(map(str, sorted(opened - closed)))
        raise ForkError(f"seq {at} of run {run_id} was made while seq {waiting} was in flight")
    return source[0].payload


def fork_journal(run_id: str, started: RunStarted, source: Sequence[Event]) -> list[Event]:
    """The forked run's journal before its fork point: its own ``RunStarted``, then the
    source's events re-keyed to ``run_id`` (times and writers as recorded)."""
    assert started.fork is not None
    fork_point(source, started.fork.seq)
    first = source[0]
    head = Event(run_id, 0, first.time_ms, first.writer, started)
    copied = [
        Event(run_id, e.seq, e.time_ms, e.writer, e.payload) for e in source[1 : started.fork.seq]
    ]
    return [head, *copied]


async def source_journal(log: Log, topics: Topics, source: str) -> list[Event]:
    return [event_codec().decode(r) for r in await read_journal(log, source, topics=topics)]


def recorded_tools(source: Sequence[Event], at: int) -> Recorded:
    """What a fork with ``tools="recorded"`` serves: the source's tool results from ``at``
    on, the first one of each tool and arguments."""
    calls = {e.seq: e.payload for e in source[at:] if isinstance(e.payload, ToolCallRequested)}
    recorded: Recorded = {}
    for event in source[at:]:
        done = event.payload
        if isinstance(done, ToolCallCompleted) and done.step in calls:
            call = calls[done.step]
            recorded.setdefault((call.tool, call.args_digest), done.result)
    return recorded


async def fork_command(
    log: Log, topics: Topics, source: str, at: int, **edits: Unpack[ForkEdits]
) -> StartRun:
    """The start command of a fork of ``source`` at ``at`` (checked against its journal)."""
    tools, prompt = edits.get("tools", "live"), edits.get("prompt", "")
    if tools not in ("live", "recorded"):
        raise ForkError(f"tools must be live or recorded, not {tools!r}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ForkError(f"the prompt has {len(prompt)} characters, more than {MAX_PROMPT_CHARS}")
    journal = await source_journal(log, topics, source)
    started = fork_point(journal, at)
    fork = Fork(source, at, edits.get("model", ""), tools, prompt)
    version = driven_version(journal[:at])  # the code that made the events the fork reuses
    return StartRun(
        started.agent,
        started.input,
        started.tenant,
        started.budget,
        fork,
        version,
        session=started.session,
    )
