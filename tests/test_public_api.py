"""The public API is small and pinned: changing it is a conscious decision."""

import wakeline

EXPECTED = {
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
}


def test_public_names_are_pinned() -> None:
    assert set(wakeline.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(wakeline, name) is not None


def test_control_flow_cannot_be_swallowed_by_except_exception() -> None:
    from wakeline.core.errors import StopRun

    assert not issubclass(StopRun, Exception)
