"""The model port: one interface for every model provider.

Adapters (:mod:`.openai_compat`, :mod:`.anthropic`, :mod:`.mock`) only translate between this
port and a provider's API.  Durability (journaling, replay, budgets) is added *around* the port
by the runtime, never inside an adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from wakeline.schemas.usage import Usage

Message = Mapping[str, Any]
"""An OpenAI-style chat message: ``{"role": ..., "content": ...}`` (plus ``tool_calls`` etc.)."""

DeltaSink = Callable[[str], None]
"""Receives text deltas while a streamed model call is in progress."""


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """What the agent asks a model.  ``messages`` use the OpenAI chat shape for every provider;
    a leading ``system`` message becomes Anthropic's ``system`` parameter."""

    model: str
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    stream: bool = False

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON form that is journaled and digested."""
        out: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in self.messages]}
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.tools:
            out["tools"] = [dict(t) for t in self.tools]
        if self.params:
            out["params"] = dict(self.params)
        return out


@dataclass(frozen=True, slots=True)
class ModelResponse:
    text: str
    usage: Usage
    response_id: str = ""
    response_model: str = ""
    finish_reason: str = ""
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    framework: Mapping[str, Any] | None = None
    """A framework adapter's own encoding of the response (JSON), journaled with the message
    under ``"framework"`` so that replay gives the framework back exactly what it got."""

    def message(self) -> dict[str, Any]:
        """The assistant message, in the OpenAI chat shape, to append to a conversation."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            msg["tool_calls"] = [dict(c) for c in self.tool_calls]
        if self.framework is not None:
            msg["framework"] = dict(self.framework)
        return msg


@dataclass(frozen=True, slots=True)
class ModelCall:
    """A request with how to send it, when that is more than "the app's provider named in the
    event": a provider of its own (how an adapter journals a framework's model,
    ``ctx.llm(..., via=provider)``; budgets, policies, prices and the journal see it as any
    call of ``provider.name``), or a time limit per attempt (a route's target)."""

    request: ModelRequest
    provider: ModelProvider | None = None
    timeout_s: float | None = None
    """An attempt with no answer after this long fails as retriable (it may have been billed)."""


class ProviderError(Exception):
    """A model call failed.  ``retriable`` is a property of the class, like aiokafka's errors."""

    retriable: ClassVar[bool] = False

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class RetriableProviderError(ProviderError):
    """Rate limits (429), server errors (5xx), timeouts and dropped connections."""

    retriable = True


class TerminalProviderError(ProviderError):
    """The request itself is wrong (4xx other than 429): retrying cannot help."""


class ModelProvider(Protocol):
    """A model provider.  ``name`` is the OpenTelemetry ``gen_ai.provider.name`` value."""

    @property
    def name(self) -> str: ...

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> ModelResponse:
        """Call the model once (no retries here: the runtime retries on durable timers)."""
        ...
