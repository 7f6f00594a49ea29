"""Errors raised to agent code and by the runtime."""

from __future__ import annotations


class WakelineError(Exception):
    """Base class of wakeline's errors."""


class NondeterminismError(WakelineError):
    """Replay found the code asking for something other than what the journal recorded.

    The run is marked drifted and its journal is left untouched: deploy code that matches the
    journal (or start a new run) and ``wakeline resume`` it.
    """

    def __init__(self, run_id: str, seq: int, recorded: str, requested: str) -> None:
        self.run_id = run_id
        self.seq = seq
        self.recorded = recorded
        self.requested = requested
        super().__init__(
            f"run {run_id}: nondeterminism at seq {seq}: the journal recorded {recorded}, "
            f"the code asked for {requested}"
        )


class StepFailedError(WakelineError):
    """A model call, tool or step failed for good (after its retries)."""

    def __init__(self, kind: str, seq: int, error_type: str, message: str) -> None:
        self.kind = kind
        self.seq = seq
        self.error_type = error_type
        self.message = message
        super().__init__(f"{kind} at seq {seq} failed: {error_type}: {message}")


class ModelCallError(StepFailedError):
    pass


class ToolCallError(StepFailedError):
    pass


class StopRun(BaseException):
    """Unwinds agent code when the runtime stops a run (drift).  Never catch it."""
