"""The Anthropic Messages adapter, through the official ``anthropic`` SDK with its own retries
turned off.  Conversations arrive in the OpenAI chat shape and are converted here.

``Usage.input_tokens`` is normalised to the *total* prompt size (Anthropic's ``input_tokens`` +
``cache_read_input_tokens`` + ``cache_creation_input_tokens``), so that, as with OpenAI, the cached
and cache-write counts are parts of ``input_tokens``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anthropic
from anthropic.types import (
    InputJSONDelta,
    Message,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    TextDelta,
    ToolUseBlock,
)

from wakeline.core.model import (
    DeltaSink,
    ModelRequest,
    ModelResponse,
    ProviderError,
    RetriableProviderError,
    TerminalProviderError,
)
from wakeline.providers.errors import explained, is_transport_error
from wakeline.schemas.usage import Usage

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicProvider", "to_anthropic_messages"]

DEFAULT_MAX_TOKENS = 1024
_LOCAL_API_KEY = "not-needed"
_SDK_KWARGS = ("extra_headers", "extra_query")
_TERMINAL_ERROR_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "billing_error",
}


class AnthropicProvider:
    """A :class:`~wakeline.core.model.ModelProvider` for the Anthropic Messages API."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        client: anthropic.AsyncAnthropic | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        if client is not None:
            self._client = client.with_options(max_retries=0, timeout=timeout_s)
            return
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            if base_url is None:
                raise ValueError(
                    "AnthropicProvider needs an API key: pass api_key=, set ANTHROPIC_API_KEY, "
                    "or pass a configured client="
                )
            key = _LOCAL_API_KEY
        self._client = anthropic.AsyncAnthropic(
            api_key=key, base_url=base_url, max_retries=0, timeout=timeout_s
        )

    @property
    def name(self) -> str:
        return "anthropic"

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        return self._client

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> ModelResponse:
        kwargs = _create_kwargs(request)
        try:
            if request.stream:
                return await self._stream(kwargs, on_delta)
            message = await self._client.messages.create(**kwargs, stream=False)
        except Exception as exc:
            mapped = map_anthropic_error(exc)
            if mapped is None:
                raise
            connection = isinstance(exc, anthropic.APIConnectionError) or is_transport_error(exc)
            raise explained(mapped, str(self._client.base_url), connection=connection) from exc
        return _from_message(message)

    async def _stream(self, kwargs: dict[str, Any], on_delta: DeltaSink | None) -> ModelResponse:
        stream = await self._client.messages.create(**kwargs, stream=True)
        acc = _StreamAccumulator()
        try:
            async for event in stream:
                delta = acc.add(event)
                if delta and on_delta is not None:
                    on_delta(delta)
        finally:
            await stream.close()
        if not acc.stopped:  # the connection closed before message_stop
            raise RetriableProviderError("stream ended before message_stop")
        return acc.response()


# ---------------------------------------------------------------- request conversion


def _create_kwargs(request: ModelRequest) -> dict[str, Any]:
    params = dict(request.params)
    kwargs: dict[str, Any] = {k: params.pop(k) for k in _SDK_KWARGS if k in params}
    extra_body: dict[str, Any] = dict(params.pop("extra_body", None) or {})
    extra_body.update(params)
    system, messages = to_anthropic_messages(request.messages)
    kwargs["model"] = request.model
    kwargs["messages"] = messages
    kwargs["max_tokens"] = request.max_tokens or DEFAULT_MAX_TOKENS
    if system:
        kwargs["system"] = system
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    if request.tools:
        kwargs["tools"] = [_tool(t) for t in request.tools]
    if extra_body:
        kwargs["extra_body"] = extra_body
    return kwargs


def to_anthropic_messages(
    messages: Sequence[Mapping[str, Any]],
) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI chat messages → (``system``, Anthropic ``messages``).

    System messages are joined into ``system``; assistant ``tool_calls`` become ``tool_use``
    blocks, ``tool`` messages ``tool_result`` blocks; consecutive same-role turns are merged.
    """
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(_text_of(m.get("content")))
            continue
        if role == "tool":
            role = "user"
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": m.get("tool_call_id", ""),
                    "content": _text_of(m.get("content")),
                }
            ]
        else:
            role = "assistant" if role == "assistant" else "user"
            blocks = _blocks(m.get("content"))
            blocks += [_tool_use(c) for c in m.get("tool_calls") or ()]
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(s for s in system if s), out


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [_part(p) for p in content if not (p.get("type") == "text" and not p.get("text"))]


def _part(part: Mapping[str, Any]) -> dict[str, Any]:
    if part.get("type") != "image_url":
        return dict(part)
    url = str((part.get("image_url") or {}).get("url", ""))
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool_use(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    raw = function.get("arguments") or "{}"
    args = json.loads(raw) if isinstance(raw, str) else dict(raw)
    return {
        "type": "tool_use",
        "id": call.get("id", ""),
        "name": function.get("name", ""),
        "input": args,
    }


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    function = tool.get("function")
    if tool.get("type") != "function" or not isinstance(function, Mapping):
        return dict(tool)  # already Anthropic-shaped
    out: dict[str, Any] = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


# ---------------------------------------------------------------- response conversion


def _compact(args: Any) -> str:
    return json.dumps(args, separators=(",", ":"), ensure_ascii=False)


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


@dataclass
class _UsageParts:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    thinking: int = 0

    def update(self, usage: Any) -> None:
        """Fold in an SDK usage object; fields that are absent or None keep their value."""
        for attr, key in (
            ("input", "input_tokens"),
            ("output", "output_tokens"),
            ("cache_read", "cache_read_input_tokens"),
            ("cache_write", "cache_creation_input_tokens"),
        ):
            value = getattr(usage, key, None)
            if value is not None:
                setattr(self, attr, int(value))
        details = getattr(usage, "output_tokens_details", None)
        thinking = getattr(details, "thinking_tokens", None)
        if thinking is not None:
            self.thinking = int(thinking)

    def usage(self) -> Usage:
        return Usage(
            input_tokens=self.input + self.cache_read + self.cache_write,
            output_tokens=self.output,
            cached_input_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
            reasoning_tokens=self.thinking,
        )


def _from_message(message: Message) -> ModelResponse:
    parts = _UsageParts()
    parts.update(message.usage)
    text = "".join(b.text for b in message.content if b.type == "text")
    calls = tuple(
        _call(b.id, b.name, _compact(b.input))
        for b in message.content
        if isinstance(b, ToolUseBlock)
    )
    return ModelResponse(
        text=text,
        usage=parts.usage(),
        response_id=message.id,
        response_model=message.model,
        finish_reason=message.stop_reason or "",
        tool_calls=calls,
    )


@dataclass
class _ToolSlot:
    id: str
    name: str
    start_input: str  # the ``input`` of content_block_start (normally ``{}``)
    partial_json: list[str] = field(default_factory=list)

    def call(self) -> dict[str, Any]:
        raw = "".join(self.partial_json) or self.start_input
        return _call(self.id, self.name, _normalise_json(raw))


@dataclass
class _StreamAccumulator:
    text: list[str] = field(default_factory=list)
    calls: dict[int, _ToolSlot] = field(default_factory=dict)
    parts: _UsageParts = field(default_factory=_UsageParts)
    response_id: str = ""
    model: str = ""
    stop_reason: str = ""
    stopped: bool = False

    def add(self, event: RawMessageStreamEvent) -> str:
        """Fold one stream event in; returns its text delta ("" if none)."""
        if isinstance(event, RawMessageStartEvent):
            self.response_id, self.model = event.message.id, event.message.model
            self.parts.update(event.message.usage)
        elif isinstance(event, RawContentBlockStartEvent):
            block = event.content_block
            if isinstance(block, ToolUseBlock):
                self.calls[event.index] = _ToolSlot(block.id, block.name, _compact(block.input))
        elif isinstance(event, RawContentBlockDeltaEvent):
            delta = event.delta
            if isinstance(delta, TextDelta):
                self.text.append(delta.text)
                return delta.text
            if isinstance(delta, InputJSONDelta) and event.index in self.calls:
                self.calls[event.index].partial_json.append(delta.partial_json)
        elif isinstance(event, RawMessageDeltaEvent):
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            self.parts.update(event.usage)
        elif isinstance(event, RawMessageStopEvent):
            self.stopped = True
        return ""

    def response(self) -> ModelResponse:
        return ModelResponse(
            text="".join(self.text),
            usage=self.parts.usage(),
            response_id=self.response_id,
            response_model=self.model,
            finish_reason=self.stop_reason,
            tool_calls=tuple(slot.call() for _, slot in sorted(self.calls.items())),
        )


def _normalise_json(raw: str) -> str:
    try:
        return _compact(json.loads(raw or "{}"))
    except ValueError:
        return raw


# ---------------------------------------------------------------- errors


def map_anthropic_error(exc: Exception) -> ProviderError | None:
    """Translate an SDK (or transport) exception into the port's error classes (None: not ours,
    re-raise as is)."""
    if isinstance(exc, ProviderError):
        return None
    if isinstance(exc, anthropic.APIResponseValidationError):
        return TerminalProviderError(f"invalid response: {exc}", status_code=exc.status_code)
    if isinstance(exc, anthropic.APIStatusError):
        return _status_error(exc.status_code, _error_type(exc.body), str(exc))
    if isinstance(exc, (anthropic.APIError, anthropic.RetryableError)):  # incl. connection
        return RetriableProviderError(f"{type(exc).__name__}: {exc}")
    if is_transport_error(exc):
        return RetriableProviderError(f"{type(exc).__name__}: {exc}")
    return None


def _error_type(body: object) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("type", "")) if isinstance(error, dict) else ""


def _status_error(status: int, error_type: str, message: str) -> ProviderError:
    if status in (408, 429) or status >= 500:
        return RetriableProviderError(message, status_code=status)
    if status < 400 and error_type not in _TERMINAL_ERROR_TYPES:
        # an ``error`` event inside a 200 stream (e.g. overloaded_error)
        return RetriableProviderError(message, status_code=None)
    return TerminalProviderError(message, status_code=status)
