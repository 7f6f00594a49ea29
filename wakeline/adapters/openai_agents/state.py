"""What the adapter's parts share: the current wakeline run and its tool options."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any

from wakeline.core.context import Context

current_run: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "wakeline_openai_agents_run", default=None
)
"""The wakeline run whose agent code is running (set by :func:`~.runner.durable`).  Agent
code runs on wakeline's deterministic event loop, so the SDK's concurrent tool calls of one
response start, and are journaled, in the same order in every run."""

current_tools: contextvars.ContextVar[Mapping[str, Mapping[str, Any]] | None] = (
    contextvars.ContextVar("wakeline_openai_agents_tools", default=None)
)
"""The per-tool options of the current :func:`~.runner.durable` scope: they apply to that
scope only, never to another run or agent of the process."""
