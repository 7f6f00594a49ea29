"""wakeline: durable execution for LLM agents on Kafka-style logs."""

from wakeline.actors.effects import RetriableToolError, ToolCall, current_tool_call
from wakeline.client import Client, RunError, RunHandle
from wakeline.core.app import App, RetryPolicy
from wakeline.core.context import Context, LLMResult
from wakeline.core.errors import (
    ModelCallError,
    NondeterminismError,
    StepFailedError,
    ToolCallError,
    WakelineError,
)
from wakeline.replay import ReplayReport, replay_run

__all__ = [
    "App",
    "Client",
    "Context",
    "LLMResult",
    "ModelCallError",
    "NondeterminismError",
    "ReplayReport",
    "RetriableToolError",
    "RetryPolicy",
    "RunError",
    "RunHandle",
    "StepFailedError",
    "ToolCall",
    "ToolCallError",
    "WakelineError",
    "current_tool_call",
    "replay_run",
]
__version__ = "0.1.0"
