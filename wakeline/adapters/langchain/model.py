"""A LangChain model call as a wakeline model call: the journaled request, the provider that
makes the real call, and the response rebuilt from the journal.

The request is journaled normalized: the messages in LangChain's own dict form
(``message_to_dict``) without their ``id`` (LangGraph stamps a random uuid4 on every message it
adds to the state, so a replay would ask a different question), the tools as OpenAI tool
schemas, the tool choice, the model settings and the response format.  The response is
journaled as LangChain's dict form of the result messages (``messages_to_dict``) plus the
structured response as JSON, and read back from there on every run -- live or replayed -- so
the agent's state is the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any
from uuid import UUID

from langchain.agents.middleware import ModelRequest as LcRequest
from langchain.agents.middleware import ModelResponse as LcResponse
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, message_to_dict, messages_from_dict
from langchain_core.tracers.context import register_configure_hook
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python

from wakeline import jsonutil
from wakeline.core.context import Context
from wakeline.core.model import (
    DeltaSink,
    ModelRequest,
    ModelResponse,
    RetriableProviderError,
    TerminalProviderError,
)
from wakeline.schemas.usage import Usage

Handler = Callable[[LcRequest[Any]], Awaitable[LcResponse[Any]]]
current_run: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "wakeline_langchain_run", default=None
)
"""The wakeline run whose agent code is running (set by :func:`~.middleware.durable`)."""
_VOLATILE = frozenset({"id"})  # a uuid4 LangGraph gives each message: not part of the question


class _Deltas(AsyncCallbackHandler):
    """Forwards a streaming model's tokens to wakeline's live deltas."""

    def __init__(self, sink: DeltaSink) -> None:
        self._sink = sink

    async def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: Any = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(token, str) and token:
            self._sink(token)


_deltas: contextvars.ContextVar[_Deltas | None] = contextvars.ContextVar(
    "wakeline_langchain_deltas", default=None
)
register_configure_hook(_deltas, inheritable=True)  # LangChain's own hook, as its tracers use


def plain(value: Any) -> Any:
    """JSON-able, as it will read back from the journal (tuples become lists, etc.)."""
    return jsonutil.loads(jsonutil.dumps(to_jsonable_python(value)))


def normalized_messages(request: LcRequest[Any]) -> list[dict[str, Any]]:
    """The messages the model is sent (the system message first), as journaled."""
    messages: list[BaseMessage] = list(request.messages)
    if request.system_message is not None:
        messages = [request.system_message, *messages]
    return normalized(messages)


def normalized(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    out = []
    for message in messages:
        encoded = message_to_dict(message)
        data = {k: v for k, v in encoded["data"].items() if k not in _VOLATILE}
        out.append(plain({"type": encoded["type"], "data": data}))
    return out


def normalized_tools(request: LcRequest[Any]) -> list[dict[str, Any]]:
    return [plain(t if isinstance(t, dict) else convert_to_openai_tool(t)) for t in request.tools]


def model_identity(request: LcRequest[Any]) -> dict[str, Any]:
    return identity_of(request.model)


def identity_of(model: BaseChatModel) -> dict[str, Any]:
    """``provider``, ``model`` and the model's own settings (LangSmith's standard params)."""
    getter = getattr(model, "_get_ls_params", None)
    params: dict[str, Any] = dict(getter()) if callable(getter) else {}
    name = params.get("ls_model_name") or getattr(model, "model_name", None)
    return {
        "provider": str(params.get("ls_provider") or model._llm_type),
        "model": str(name or getattr(model, "model", None) or model._llm_type),
        "temperature": params.get("ls_temperature"),
        "max_tokens": params.get("ls_max_tokens"),
        "stop": params.get("ls_stop"),
        "stream": bool(getattr(model, "streaming", False)),
    }


def request_parameters(request: LcRequest[Any]) -> dict[str, Any]:
    """What else decides the answer: tool choice, response format and the model's stops."""
    response_format = request.response_format
    shown: Any = None
    if response_format is not None:
        schema = getattr(response_format, "schema", response_format)
        shown = {"strategy": type(response_format).__name__, "schema": _schema_json(schema)}
    out: dict[str, Any] = plain(
        {
            "tool_choice": request.tool_choice,
            "response_format": shown,
            "stop": model_identity(request)["stop"],
        }
    )
    return out


def _schema_json(schema: Any) -> Any:
    if isinstance(schema, dict):
        return schema
    with contextlib.suppress(Exception):
        return TypeAdapter(schema).json_schema()
    return getattr(schema, "__name__", repr(schema))


def encode(response: LcResponse[Any]) -> dict[str, Any]:
    """The journaled form of LangChain's model response."""
    structured = response.structured_response
    out: dict[str, Any] = plain(
        {
            "messages": [message_to_dict(m) for m in response.result],
            "structured": None if structured is None else to_jsonable_python(structured),
        }
    )
    return out


def decode(payload: Mapping[str, Any], request: LcRequest[Any]) -> LcResponse[Any]:
    """LangChain's model response from its journaled form (the structured response is
    validated against the request's schema again, as the agent parsed it the first time)."""
    messages = messages_from_dict(list(payload["messages"]))
    structured = payload.get("structured")
    if structured is not None and request.response_format is not None:
        schema = getattr(request.response_format, "schema", None)
        if schema is not None and not isinstance(schema, dict):
            structured = TypeAdapter(schema).validate_python(structured)
    return LcResponse(result=messages, structured_response=structured)


Call = Callable[[], Awaitable[tuple[AIMessage, dict[str, Any]]]]
"""The real model call: LangChain's answer and its journaled form."""


def via_handler(handler: Handler, request: LcRequest[Any]) -> Call:
    """The call of a ``create_agent`` agent's model: the middleware's ``handler``."""

    async def call() -> tuple[AIMessage, dict[str, Any]]:
        done = await handler(request)
        ai = next((m for m in done.result if isinstance(m, AIMessage)), None)
        if ai is None:
            raise TerminalProviderError("the LangChain model call returned no AIMessage")
        return ai, encode(done)

    return call


class FrameworkModel:
    """The agent's own model (LangChain's) as a wakeline provider for one request.

    ``complete`` makes the real call in the agent's context (a copy of it, taken when the
    agent asked), so LangChain's callbacks and LangGraph's config reach it."""

    def __init__(self, name: str, call: Call) -> None:
        self.name = name
        self._call = call
        self._context = contextvars.copy_context()

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> ModelResponse:
        with http_errors():
            ai, payload = await asyncio.create_task(
                self._in_context(on_delta), context=self._context.copy(), name="langchain-model"
            )
        meta = ai.response_metadata or {}
        return ModelResponse(
            text=ai.text,
            usage=usage_of(ai),
            response_id=str(meta.get("id") or ai.id or ""),
            response_model=str(meta.get("model_name") or request.model),
            finish_reason=str(meta.get("finish_reason") or ""),
            tool_calls=tuple(_tool_call_message(c) for c in ai.tool_calls),
            framework={"langchain": payload},
        )

    async def _in_context(self, on_delta: DeltaSink | None) -> tuple[AIMessage, dict[str, Any]]:
        current_run.set(None)  # the real call is not agent code: nothing in it is journaled
        if on_delta is not None:  # a streaming model's tokens (this task's context only)
            _deltas.set(_Deltas(on_delta))
        return await self._call()


def usage_of(ai: AIMessage) -> Usage:
    usage: Mapping[str, Any] = ai.usage_metadata or {}
    inputs: Mapping[str, Any] = usage.get("input_token_details") or {}
    outputs: Mapping[str, Any] = usage.get("output_token_details") or {}
    return Usage(
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        cached_input_tokens=int(inputs.get("cache_read") or 0),
        cache_write_tokens=int(inputs.get("cache_creation") or 0),
        reasoning_tokens=int(outputs.get("reasoning") or 0),
    )


def _tool_call_message(call: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": call.get("id") or "",
        "type": "function",
        "function": {"name": call["name"], "arguments": jsonutil.dumps(call.get("args") or {})},
    }


@contextlib.contextmanager
def http_errors() -> Iterator[None]:
    """The provider SDK's errors as wakeline's: 429 and 5xx (and lost connections)
    retriable, other 4xx terminal.  LangChain's chat models raise their SDK's errors (for
    ``ChatOpenAI`` the ``openai`` package's ``APIStatusError`` and ``APIConnectionError``)."""
    try:
        yield
    except Exception as exc:
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and 400 <= status < 600:
            retriable = status == 429 or status >= 500
            kind = RetriableProviderError if retriable else TerminalProviderError
            raise kind(str(exc), status_code=status) from exc
        if type(exc).__name__ in ("APIConnectionError", "APITimeoutError"):
            raise RetriableProviderError(str(exc)) from exc
        raise
