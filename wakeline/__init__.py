"""wakeline: durable execution for LLM agents on Kafka-style logs."""

from wakeline.actors.context import Context, LLMResult
from wakeline.actors.effects import RetriableToolError, ToolCall, current_tool_call
from wakeline.actors.errors import (
    ModelCallError,
    NondeterminismError,
    StepFailedError,
    ToolCallError,
    WakelineError,
)
from wakeline.app import App, RetryPolicy
from wakeline.client import Client, RunError, RunHandle
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
