"""The wakeline model: each model request of the SDK's agent loop becomes a ``ctx.llm`` call.

:class:`WakelineModel` wraps the model the SDK resolved for an agent (``agent.model``, a name
resolved by the run's ``model_provider``, or ``RunConfig.model``).  Inside a wakeline run,
``get_response`` and ``stream_response`` become ``ctx.llm(..., via=FrameworkModel)``: the
journaled request is the instructions and input items (the SDK's Responses-format JSON), the
tools, handoffs and output schema the model is offered, the model settings and the
conversation parameters; the provider makes the real SDK call only when the call has to be
made.  The SDK gets its response back from the journaled JSON, live or replayed alike, so a
replay sees exactly what the first run saw.  Outside a wakeline run the wrapper forwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import openai
from agents import (
    AgentOutputSchemaBase,
    FunctionTool,
    Handoff,
    Model,
    ModelResponse,
    ModelSettings,
    ModelTracing,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Tool,
    TResponseInputItem,
)
from agents.usage import deserialize_usage, serialize_usage
from openai._models import construct_type
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam
from pydantic import BaseModel

from wakeline import jsonutil
from wakeline.adapters.openai_agents.state import current_run
from wakeline.core.model import (
    DeltaSink,
    ModelRequest,
    RetriableProviderError,
    TerminalProviderError,
)
from wakeline.core.model import ModelResponse as WakelineResponse
from wakeline.schemas.usage import Usage

Payload = dict[str, Any]
Call = Callable[[DeltaSink | None], Awaitable[ModelResponse | Response]]
"""Makes the real SDK call: its response (a stream's final ``Response``)."""
KEY = "openai_agents"  # the SDK's response under the journaled message's "framework"


class WakelineModel(Model):
    """The SDK model ``inner``, journaled as steps of the current wakeline run."""

    def __init__(self, inner: Model) -> None:
        while isinstance(inner, WakelineModel):  # wrapped once only
            inner = inner.inner
        self.inner: Model = inner
        self.model_name = str(getattr(inner, "model", "") or type(inner).__name__)
        openai_model = isinstance(inner, OpenAIChatCompletionsModel | OpenAIResponsesModel)
        self.provider = "openai" if openai_model else "openai-agents"

    async def close(self) -> None:
        await self.inner.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        await self.inner._cleanup_on_run_end(owner)

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        args = (system_instructions, input, model_settings, tools, output_schema, handoffs)
        kwargs: dict[str, Any] = dict(
            previous_response_id=previous_response_id, conversation_id=conversation_id
        )
        ctx = current_run.get()
        if ctx is None:
            return await self.inner.get_response(*args, tracing, **kwargs, prompt=prompt)

        async def call(on_delta: DeltaSink | None) -> ModelResponse:
            return await self.inner.get_response(*args, tracing, **kwargs, prompt=prompt)

        payload = await self._journal(call, *args, stream=False, **kwargs, prompt=prompt)
        return decode_response(payload)

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[ResponseStreamEvent]:
        args = (system_instructions, input, model_settings, tools, output_schema, handoffs)
        kwargs: dict[str, Any] = dict(
            previous_response_id=previous_response_id, conversation_id=conversation_id
        )
        if current_run.get() is None:
            async for event in self.inner.stream_response(*args, tracing, **kwargs, prompt=prompt):
                yield event
            return

        async def call(on_delta: DeltaSink | None) -> Response:
            stream = self.inner.stream_response(*args, tracing, **kwargs, prompt=prompt)
            return await _collect(stream, on_delta)

        payload = await self._journal(call, *args, stream=True, **kwargs, prompt=prompt)
        response = _built(Response, payload["response"])
        for event in _replayed_events(response):
            yield event

    async def _journal(
        self,
        call: Call,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        *,
        stream: bool,
        **conversation: Any,
    ) -> Payload:
        """One ``ctx.llm`` call; returns the SDK's response JSON from the journal."""
        ctx = current_run.get()
        assert ctx is not None
        settings = {k: v for k, v in model_settings.to_json_dict().items() if v is not None}
        offered = {
            "settings": settings,  # the ones set
            "handoffs": [_handoff_json(h) for h in handoffs],
            "output_schema": _schema_json(output_schema),
            **conversation,  # previous_response_id, conversation_id, prompt
        }
        result = await ctx.llm(
            normalized(system_instructions, input),
            model=self.model_name,
            via=FrameworkModel(self.provider, call),
            tools=[_tool_json(t) for t in tools],
            max_tokens=model_settings.max_tokens,
            temperature=model_settings.temperature,
            stream=stream,
            **{k: plain(v) for k, v in offered.items() if v},
        )
        payload: Payload = result.message["framework"][KEY]
        return payload


def normalized(
    system_instructions: str | None, input: str | list[TResponseInputItem]
) -> list[dict[str, Any]]:
    """The request's messages as journaled: the instructions, then the input items in the SDK's
    JSON form (no client-side clock or random ids are in them: the SDK's Chat Completions
    items carry the constant ``__fake_id__``, Responses items the server's ids)."""
    messages = [{"role": "system", "content": system_instructions}] if system_instructions else []
    if isinstance(input, str):
        return [*messages, {"role": "user", "content": input}]
    return [*messages, *(plain(item) for item in input)]


def plain(value: Any) -> Any:
    """JSON-able: pydantic models dumped as the SDK dumps them (unset fields left out)."""
    if isinstance(value, BaseModel):
        return plain(value.model_dump(mode="json", exclude_unset=True))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return jsonutil.loads(jsonutil.dumps(value))


def _tool_json(tool: Tool) -> dict[str, Any]:
    if isinstance(tool, FunctionTool):
        return {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": plain(tool.params_json_schema),
            "strict": tool.strict_json_schema,
        }
    return {"type": type(tool).__name__, "name": str(getattr(tool, "name", ""))}


def _handoff_json(handoff: Handoff) -> dict[str, Any]:
    return {
        "name": handoff.tool_name,
        "description": handoff.tool_description,
        "parameters": plain(handoff.input_json_schema),
        "agent": handoff.agent_name,
    }


def _schema_json(schema: AgentOutputSchemaBase | None) -> Any:
    if schema is None or schema.is_plain_text():
        return None
    return {"schema": plain(schema.json_schema()), "strict": schema.is_strict_json_schema()}


def encode_response(response: ModelResponse) -> Payload:
    """The SDK's response as journaled JSON (output items without their unset fields)."""
    return {
        "output": [plain(item) for item in response.output],
        "usage": plain(serialize_usage(response.usage)),
        "response_id": response.response_id,
        "request_id": response.request_id,
    }


def _built(kind: Any, value: Any) -> Any:
    """An OpenAI type from its JSON as the OpenAI client builds it from a response body
    (``construct_type``: no validation, only the fields present are set), so the SDK gets
    back the same objects, dumped the same way, live or replayed."""
    return construct_type(type_=kind, value=value)


def decode_response(payload: Payload) -> ModelResponse:
    """The SDK's response, rebuilt from its journaled JSON."""
    return ModelResponse(
        output=[_built(ResponseOutputItem, item) for item in payload["output"]],
        usage=deserialize_usage(payload["usage"]),
        response_id=payload.get("response_id"),
        request_id=payload.get("request_id"),
    )


async def _collect(
    stream: AsyncIterator[ResponseStreamEvent], on_delta: DeltaSink | None
) -> Response:
    """Read a streamed response to its end, forwarding text deltas; its final ``Response``."""
    final: Response | None = None
    async for event in stream:
        if event.type == "response.output_text.delta" and on_delta is not None:
            on_delta(event.delta)
        elif isinstance(event, ResponseCompletedEvent):
            final = event.response
    if final is None:
        raise RetriableProviderError("the model's stream ended without a completed response")
    return final


class FrameworkModel:
    """The SDK's own model as a wakeline provider for one request: ``complete`` makes the real
    call and reads wakeline's view (text, usage, tool calls) of the SDK's response."""

    def __init__(self, name: str, call: Call) -> None:
        self.name = name
        self._call = call

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> WakelineResponse:
        with http_errors():
            response = await self._call(on_delta)
        if isinstance(response, Response):  # streamed: the final Responses-API response
            payload: Payload = {"response": plain(response)}
            output, rid, usage = list(response.output), response.id, _response_usage(response)
        else:
            payload = encode_response(response)
            output, rid, usage = response.output, response.response_id or "", response.usage
        calls = [item for item in output if isinstance(item, ResponseFunctionToolCall)]
        return WakelineResponse(
            text=_text(output),
            usage=Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_input_tokens=usage.input_tokens_details.cached_tokens or 0,
                cache_write_tokens=int(
                    getattr(usage.input_tokens_details, "cache_write_tokens", 0) or 0
                ),
                reasoning_tokens=usage.output_tokens_details.reasoning_tokens or 0,
            ),
            response_id=rid or "",
            response_model=request.model,
            finish_reason="tool_calls" if calls else "stop",
            tool_calls=tuple(_tool_call_message(c) for c in calls),
            framework={KEY: payload},
        )


def _replayed_events(response: Response) -> list[ResponseStreamEvent]:
    """What the SDK's stream gets, live or replayed alike (from the journaled response): each
    message's text as one text delta, then the completed response (the live token deltas go
    to wakeline's delta stream: ``Client.watch(..., deltas=True)``)."""
    events: list[ResponseStreamEvent] = []
    for index, item in enumerate(response.output):
        if not isinstance(item, ResponseOutputMessage):
            continue
        for part, content in enumerate(item.content):
            if isinstance(content, ResponseOutputText):
                delta = ResponseTextDeltaEvent(
                    type="response.output_text.delta",
                    item_id=item.id,
                    output_index=index,
                    content_index=part,
                    delta=content.text,
                    logprobs=[],
                    sequence_number=len(events),
                )
                events.append(delta)
    done = ResponseCompletedEvent(
        type="response.completed", response=response, sequence_number=len(events)
    )
    return [*events, done]


def _response_usage(response: Response) -> Any:
    from agents.usage import _response_usage_to_usage

    return _response_usage_to_usage(response.usage) if response.usage else deserialize_usage({})


def _text(output: list[Any]) -> str:
    parts = [
        content.text
        for item in output
        if isinstance(item, ResponseOutputMessage)
        for content in item.content
        if isinstance(content, ResponseOutputText)
    ]
    return "".join(parts)


def _tool_call_message(call: ResponseFunctionToolCall) -> dict[str, Any]:
    function = {"name": call.name, "arguments": call.arguments}
    return {"id": call.call_id, "type": "function", "function": function}


@contextlib.contextmanager
def http_errors() -> Iterator[None]:
    """The OpenAI SDK's errors as wakeline's: 429, 5xx, timeouts and dropped connections are
    retriable, other 4xx terminal."""
    try:
        yield
    except openai.APIStatusError as exc:
        status = exc.status_code
        kind = RetriableProviderError if status == 429 or status >= 500 else TerminalProviderError
        raise kind(str(exc), status_code=status) from exc
    except openai.APIConnectionError as exc:  # APITimeoutError included
        raise RetriableProviderError(str(exc)) from exc
