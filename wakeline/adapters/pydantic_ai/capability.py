"""The pydantic-ai durability capability, and how a wakeline run enters it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic_ai import Agent
from pydantic_ai.agent import EventStreamHandler
from pydantic_ai.durable_exec import (
    JSON_CODEC,
    BaseDurabilityCapability,
    DurabilityEngineSpec,
    conversation_id_from_run_id,
    replay_scope,
)
from pydantic_ai.external_events import external_event_scope
from pydantic_ai.models import Model

from wakeline.adapters.pydantic_ai.backend import WakelineBackend, current_run
from wakeline.adapters.pydantic_ai.events import WakelineEventWaiter
from wakeline.adapters.pydantic_ai.streaming import forwarding
from wakeline.core.app import App
from wakeline.core.context import Context


class WakelineTerminalError(Exception):
    """A unit's result cannot be journaled (not JSON): retrying cannot help."""


@dataclass(init=False)
class WakelineDurability(BaseDurabilityCapability[Any]):
    """Attach to an agent: ``Agent(model, name="...", capabilities=[WakelineDurability()])``.

    ``event_stream_handler``: as pydantic-ai's; its model stream events are consumed live
    inside each streamed request, whose text also goes to wakeline's live deltas.
    ``tools``: per-tool options by tool name, e.g. ``{"charge": {"idempotent": False}}``: a
    tool that is not idempotent is never re-run after a crash left it in doubt (the run waits
    for a decision, as for ``@app.tool(idempotent=False)``).  Tools are idempotent by default.
    """

    engine_spec: ClassVar[DurabilityEngineSpec] = DurabilityEngineSpec(
        engine_name="wakeline",
        durable_unit_noun="step",
        durable_unit_plural="steps",
        durable_container_noun="wakeline run",
        codec=JSON_CODEC,  # the journal holds JSON
        serialization_failure=lambda exc: WakelineTerminalError(str(exc)),
        wrapped_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        toolset_lifecycles={
            "function": "enter-always",
            "mcp": "enter-outside-durable",  # units run in the driver's tasks: each enters its own
            "dynamic": "enter-never",
        },
        tool_call_result_upgrade_lenient=False,
        journal_discovery=True,
        sequential_tools_in_durable_context=True,  # the journal is one ordered stream per run
        unsupported_runtime_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        tool_config_key="wakeline",
        cancellation_error_types=(),
        accepts_cancellation_token=False,
    )

    def __init__(
        self,
        *,
        models: Mapping[str, Model] | None = None,
        event_stream_handler: EventStreamHandler[Any] | None = None,
        name: str | None = None,
        tools: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(models=models, event_stream_handler=event_stream_handler, name=name)
        self._tool_options = dict(tools or {})

    def _model_stream_event_handler(self) -> EventStreamHandler[Any] | None:
        """The user's handler, with the stream's text also sent to wakeline's live deltas
        (the engines' extension point for what consumes a streamed model request)."""
        return forwarding(super()._model_stream_event_handler())

    @property
    def in_durable_context(self) -> bool:
        """In a wakeline run's agent code (a step's own body runs elsewhere: it is not)."""
        return current_run.get() is not None

    def get_durable_operation_backend(self) -> WakelineBackend:
        return WakelineBackend(
            agent_name=self.name,
            default_model_id=self.default_model_id,
            tools=self._tool_options,
        )

    def get_default_run_id(self) -> str | None:
        ctx = current_run.get()
        return None if ctx is None else str(ctx.uuid())  # journaled: the same on replay

    def get_default_conversation_id(self, run_id: str) -> str | None:
        return conversation_id_from_run_id(run_id) if self.in_durable_context else None

    async def get_run_start_time(self, run_id: str) -> datetime | None:
        ctx = current_run.get()
        return None if ctx is None else ctx.now()


@contextlib.contextmanager
def durable(ctx: Context) -> Iterator[None]:
    """Inside this, agents with :class:`WakelineDurability` journal into ``ctx``'s run, their
    external events wait on wakeline gates (:mod:`.events`), and what a replay re-runs from the
    journal emits no pydantic-ai spans again."""
    token = current_run.set(ctx)
    try:
        with replay_scope(), external_event_scope(WakelineEventWaiter(ctx)):
            yield
    finally:
        current_run.reset(token)


def register(app: App, agent: Agent[Any, Any], *, name: str | None = None) -> None:
    """Register ``agent`` as the wakeline agent ``name`` (default: the agent's name): its input
    is the user prompt, its output the agent's output (JSON-able); tool approvals it asks for
    are wakeline gates (:func:`~.approvals.run_with_approvals`)."""
    agent_name = name or agent.name
    if not agent_name:
        raise ValueError("the agent needs a name (Agent(..., name=...)) or pass name=")

    async def run(ctx: Context, prompt: str) -> Any:
        from wakeline.adapters.pydantic_ai.approvals import run_with_approvals

        return (await run_with_approvals(ctx, agent, prompt)).output

    run.__name__ = agent_name
    app.agent(run, name=agent_name)
