"""wakeline: durable execution for LLM agents on Kafka-style logs.

This is the agent author's API: register agents and tools on an :class:`App`, call models,
tools, timers and approvals through the :class:`Context`, and govern them with budgets and
policies.  ``import wakeline`` loads only the pure core and the wire schemas; the client, the
worker (``wakeline.worker``), the providers (``wakeline.providers``) and the test toolkit
(``wakeline.testing``) are imported when used.

Other audiences: ``wakeline.worker`` (run workers), ``wakeline.providers`` (model providers and
the price table), ``wakeline.testing`` (fakes and waits for tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wakeline._lazy import lazy_names
from wakeline.core.app import App, AppError, RetryPolicy
from wakeline.core.context import Context
from wakeline.core.errors import (
    ModelCallError,
    NondeterminismError,
    StepFailedError,
    ToolCallError,
    WakelineError,
)
from wakeline.core.governance import CallInfo, Deny, Policy
from wakeline.core.results import Approval, LLMResult
from wakeline.core.routing import RouteError, Target
from wakeline.core.tools import RetriableToolError, ToolCall, current_tool_call
from wakeline.schemas.events import Budget

if TYPE_CHECKING:
    from wakeline.client import Client, RunError, RunHandle
    from wakeline.replay import ReplayReport, replay_run

__all__ = [
    "App",
    "AppError",
    "Approval",
    "Budget",
    "CallInfo",
    "Client",
    "Context",
    "Deny",
    "LLMResult",
    "ModelCallError",
    "NondeterminismError",
    "Policy",
    "ReplayReport",
    "RetriableToolError",
    "RetryPolicy",
    "RouteError",
    "RunError",
    "RunHandle",
    "StepFailedError",
    "Target",
    "ToolCall",
    "ToolCallError",
    "WakelineError",
    "current_tool_call",
    "replay_run",
]
__version__ = "0.1.0"

_LAZY = {
    "Client": "wakeline.client",
    "RunError": "wakeline.client",
    "RunHandle": "wakeline.client",
    "ReplayReport": "wakeline.replay",
    "replay_run": "wakeline.replay",
}


__getattr__ = lazy_names(__name__, _LAZY, globals())
