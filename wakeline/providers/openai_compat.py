"""The OpenAI Chat Completions adapter (OpenAI, vLLM, Ollama, llama.cpp, ...: only ``base_url``
differs), through the official ``openai`` SDK with its own retries turned off."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from wakeline.core.model import (
    DeltaSink,
    ModelRequest,
    ModelResponse,
    ProviderError,
    RetriableProviderError,
    TerminalProviderError,
)
from wakeline.providers.errors import explained, is_transport_error
from wakeline.providers.estimate import estimate_usage
from wakeline.schemas.usage import Usage

__all__ = ["OpenAICompatProvider"]

_LOCAL_API_KEY = "not-needed"  # local servers (vLLM, Ollama, llama.cpp) accept any key
_SDK_KWARGS = ("extra_headers", "extra_query")


class OpenAICompatProvider:
    """A :class:`~wakeline.core.model.ModelProvider` for any OpenAI-compatible server."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        name: str = "openai",
        client: openai.AsyncOpenAI | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self._name = name
        if client is not None:
            self._client = client.with_options(max_retries=0, timeout=timeout_s)
            return
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise ValueError(
                    "OpenAICompatProvider needs an API key: pass api_key=, set OPENAI_API_KEY, "
                    "or pass base_url= for a local server that needs none"
                )
            key = _LOCAL_API_KEY
        self._client = openai.AsyncOpenAI(
            api_key=key, base_url=base_url, max_retries=0, timeout=timeout_s
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def client(self) -> openai.AsyncOpenAI:
        return self._client

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> ModelResponse:
        kwargs = _create_kwargs(request)
        try:
            if request.stream:
                return await self._stream(request, kwargs, on_delta)
            completion = await self._client.chat.completions.create(**kwargs, stream=False)
        except Exception as exc:
            mapped = map_openai_error(exc)
            if mapped is None:
                raise
            connection = isinstance(exc, openai.APIConnectionError) or is_transport_error(exc)
            base_url = str(self._client.base_url)
            raise explained(mapped, base_url, connection=connection, v1=True) from exc
        return _from_completion(completion, request)

    async def _stream(
        self, request: ModelRequest, kwargs: dict[str, Any], on_delta: DeltaSink | None
    ) -> ModelResponse:
        stream = await self._client.chat.completions.create(**kwargs, stream=True)
        acc = _StreamAccumulator()
        try:
            async for chunk in stream:
                delta = acc.add(chunk)
                if delta and on_delta is not None:
                    on_delta(delta)
        finally:
            await stream.close()
        if not acc.finish_reason:  # the connection closed before the last chunk
            raise RetriableProviderError("stream ended before its finish_reason")
        return acc.response(request)


def _create_kwargs(request: ModelRequest) -> dict[str, Any]:
    """SDK keyword arguments; ``params`` go into the JSON body and override mapped fields."""
    params = dict(request.params)
    kwargs: dict[str, Any] = {k: params.pop(k) for k in _SDK_KWARGS if k in params}
    extra_body: dict[str, Any] = dict(params.pop("extra_body", None) or {})
    extra_body.update(params)
    kwargs["model"] = request.model
    kwargs["messages"] = [dict(m) for m in request.messages]
    if request.max_tokens is not None and "max_completion_tokens" not in extra_body:
        kwargs["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    if request.tools:
        kwargs["tools"] = [dict(t) for t in request.tools]
    if request.stream:
        options = dict(extra_body.pop("stream_options", None) or {})
        kwargs["stream_options"] = {**options, "include_usage": True}
    if extra_body:
        kwargs["extra_body"] = extra_body
    return kwargs


def _usage(
    usage: CompletionUsage | None,
    request: ModelRequest,
    text: str,
    calls: Sequence[Mapping[str, Any]],
) -> Usage:
    if usage is None:  # the server reported none (llama.cpp's, in a stream): estimate it
        return estimate_usage(request, text, calls)
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        cached_input_tokens=(prompt.cached_tokens or 0) if prompt else 0,
        reasoning_tokens=(completion.reasoning_tokens or 0) if completion else 0,
    )


def _from_completion(completion: ChatCompletion, request: ModelRequest) -> ModelResponse:
    choice = completion.choices[0] if completion.choices else None
    calls: tuple[dict[str, Any], ...] = ()
    if choice is not None and choice.message.tool_calls:
        calls = tuple(_tool_call(c) for c in choice.message.tool_calls)
    text = (choice.message.content or "") if choice else ""
    return ModelResponse(
        text=text,
        usage=_usage(completion.usage, request, text, calls),
        response_id=completion.id or "",
        response_model=completion.model or "",
        finish_reason=(choice.finish_reason or "") if choice else "",
        tool_calls=calls,
    )


def _tool_call(call: Any) -> dict[str, Any]:
    """A tool call in the canonical OpenAI shape (the same keys as a streamed one)."""
    function = getattr(call, "function", None)
    if getattr(call, "type", None) != "function" or function is None:
        return dict(call.model_dump(mode="json", exclude_none=True))
    fn = {"name": function.name, "arguments": function.arguments}
    return {"id": call.id, "type": "function", "function": fn}


@dataclass
class _StreamAccumulator:
    """Assembles a :class:`ModelResponse` from ``ChatCompletionChunk``\\ s."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    usage: CompletionUsage | None = None
    response_id: str = ""
    model: str = ""
    finish_reason: str = ""

    def add(self, chunk: ChatCompletionChunk) -> str:
        """Fold one chunk in; returns its text delta ("" if none)."""
        self.response_id = self.response_id or chunk.id or ""
        self.model = self.model or chunk.model or ""
        if chunk.usage is not None:
            self.usage = chunk.usage
        if not chunk.choices:
            return ""
        choice = chunk.choices[0]
        self.finish_reason = choice.finish_reason or self.finish_reason
        for call in choice.delta.tool_calls or ():
            empty = {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            slot = self.calls.setdefault(call.index, empty)
            slot["id"] = call.id or slot["id"]
            if call.function is not None:
                slot["function"]["name"] += call.function.name or ""
                slot["function"]["arguments"] += call.function.arguments or ""
        delta = choice.delta.content or ""
        if delta:
            self.text.append(delta)
        return delta

    def response(self, request: ModelRequest) -> ModelResponse:
        text, calls = "".join(self.text), tuple(self.calls[i] for i in sorted(self.calls))
        return ModelResponse(
            text=text,
            usage=_usage(self.usage, request, text, calls),
            response_id=self.response_id,
            response_model=self.model,
            finish_reason=self.finish_reason,
            tool_calls=calls,
        )


def map_openai_error(exc: Exception) -> ProviderError | None:
    """Translate an SDK (or transport) exception into the port's error classes (None: not ours,
    re-raise as is)."""
    if isinstance(exc, ProviderError):
        return None
    if isinstance(exc, openai.APIResponseValidationError):
        return TerminalProviderError(f"invalid response: {exc}", status_code=exc.status_code)
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc.status_code, str(exc))
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return RetriableProviderError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, openai.APIError):  # e.g. an error event in the middle of a stream
        return RetriableProviderError(f"{type(exc).__name__}: {exc}")
    if is_transport_error(exc):
        return RetriableProviderError(f"{type(exc).__name__}: {exc}")
    return None


def _status_error(status: int, message: str) -> ProviderError:
    if status in (408, 429) or status >= 500:
        return RetriableProviderError(message, status_code=status)
    return TerminalProviderError(message, status_code=status)
