"""The durable operation backend: each pydantic-ai durable unit becomes a wakeline step.

pydantic-ai hands :meth:`WakelineBackend.execute` one unit at a time with ``body``, which runs
the unit (the model request, the tool) and returns its JSON payload.  A model request becomes
``ctx.llm(..., via=FrameworkModel)``: the journaled request is the unit's messages, settings
and request parameters (normalized: without the wall-clock timestamps pydantic-ai stamps on
messages, so a replay asks the same question), and the provider runs ``body`` only when the
call really has to be made.  A tool call becomes ``ctx.tool`` with the tool's arguments; any
other unit a ``ctx.step``.  The payload comes back from the journal on replay, byte for byte.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from pydantic import TypeAdapter
from pydantic_ai.durable_exec import (
    JSON_CODEC,
    BoundDurableOperation,
    DurableOperation,
    DurableOperationId,
    JournalCallableOperationBackend,
    ModelRequestId,
    ModelRequestParams,
    ToolsetCallToolId,
    ToolsetCallToolParams,
    record_durable_unit,
)
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelMessagesTypeAdapter, ToolCallPart
from pydantic_ai.messages import ModelResponse as PaiResponse
from pydantic_ai.models import ModelRequestParameters

from wakeline import jsonutil
from wakeline.adapters.pydantic_ai.streaming import delta_sink
from wakeline.core.app import ToolSpec
from wakeline.core.context import Context
from wakeline.core.model import (
    DeltaSink,
    ModelRequest,
    ModelResponse,
    RetriableProviderError,
    TerminalProviderError,
)
from wakeline.schemas.usage import Usage

Config = Mapping[str, Any]
Body = Callable[[], Awaitable[object]]

current_run: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "wakeline_pydantic_ai_run", default=None
)
"""The wakeline run whose agent code is running (set by :func:`~.capability.durable`)."""
_params: contextvars.ContextVar[object] = contextvars.ContextVar("wakeline_pydantic_ai_params")
_PARAMETERS = TypeAdapter(ModelRequestParameters)
_VOLATILE = frozenset({"timestamp"})  # stamped from the wall clock: not part of the question


class _Bound(BoundDurableOperation[Any, Any, Any]):
    """Keeps the unit's parameters where :meth:`WakelineBackend.execute` can read them (the
    base passes ``execute`` only an opaque cache key)."""

    def __init__(self, inner: BoundDurableOperation[Any, Any, Any]) -> None:
        self._inner = inner

    @property
    def operation(self) -> DurableOperation[Any, Any, Any]:
        return self._inner.operation

    async def __call__(self, params: Any, *, config: object | None = None) -> Any:
        token = _params.set(params)
        try:
            return await self._inner(params, config=config)
        finally:
            _params.reset(token)


class WakelineBackend(JournalCallableOperationBackend[Config]):
    """Runs pydantic-ai's durable units as steps of the current wakeline run."""

    def __init__(self, *, agent_name: str, default_model_id: str | None, tools: Config) -> None:
        from pydantic_ai.durable_exec import RoleBasedOperationConfig

        config = RoleBasedOperationConfig[Config](model={}, event={}, capability={}, tool={})
        super().__init__(agent_name=agent_name, default_model_id=default_model_id, config=config)
        self._tools = tools

    def bind(
        self, operation: DurableOperation[Any, Any, Any]
    ) -> BoundDurableOperation[Any, Any, Any]:
        return _Bound(super().bind(operation))

    async def execute(
        self,
        *,
        operation_id: DurableOperationId,
        name: str,
        body: Body,
        cache_key: tuple[object, ...],
        config: Config,
    ) -> object:
        ctx = current_run.get()
        if ctx is None:  # in_durable_context said yes: only inside durable()
            raise RuntimeError("a pydantic-ai durable unit ran outside a wakeline run")
        ran = [False]

        async def live() -> object:
            ran[0] = True
            return await body()

        params = _params.get(None)
        match operation_id:
            case ModelRequestId() if isinstance(params, ModelRequestParams):
                payload = await _model_request(ctx, operation_id, params, live)
            case ToolsetCallToolId() if isinstance(params, ToolsetCallToolParams):
                payload = await _tool_call(ctx, params, live, self._idempotent(params.name))
            case _:  # discovery, event handlers, capability operations: the union grows
                payload = await ctx.step(name, live)
        record_durable_unit(executed=ran[0])
        return payload

    def _idempotent(self, tool: str) -> bool:
        return bool(self._tools.get(tool, {}).get("idempotent", True))


async def _model_request(
    ctx: Context, operation: ModelRequestId, params: ModelRequestParams, live: Body
) -> object:
    model = params.run_context.model
    provider = FrameworkModel(str(getattr(model, "system", "") or "pydantic-ai"), live)
    parameters = _PARAMETERS.dump_python(params.model_request_parameters, mode="json")
    result = await ctx.llm(
        normalized(params.messages),
        model=operation.model_name,
        via=provider,
        stream=operation.streaming,
        settings=_plain(params.model_settings or {}),
        parameters=_plain(parameters),
    )
    return result.message["framework"]["pydantic_ai"]


async def _tool_call(
    ctx: Context, params: ToolsetCallToolParams, live: Body, idempotent: bool
) -> object:
    async def run(**_: Any) -> object:
        return await live()

    spec = ToolSpec(params.name, run, idempotent=idempotent)
    return await ctx.tool(spec, **_plain(params.tool_args))


def normalized(messages: list[Any]) -> list[dict[str, Any]]:
    """The messages as journaled: pydantic-ai's JSON form without wall-clock timestamps."""
    dumped = ModelMessagesTypeAdapter.dump_python(messages, mode="json")
    return [_strip(m) for m in dumped]


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """JSON-able (settings and arguments may hold tuples or other JSON-able values)."""
    return jsonutil.loads(jsonutil.dumps(value))


class FrameworkModel:
    """The agent's own model as a wakeline provider for one request: ``complete`` runs the
    unit's body (the real request) and reads wakeline's view of its response."""

    def __init__(self, name: str, body: Body) -> None:
        self.name = name
        self._body = body

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> ModelResponse:
        token = delta_sink.set(on_delta)  # a streamed request's text goes there live
        try:
            with _http_errors():
                payload = await self._body()
        finally:
            delta_sink.reset(token)
        response = JSON_CODEC.load(PaiResponse, payload)
        usage = response.usage
        details = usage.details or {}
        calls = [p for p in response.parts if isinstance(p, ToolCallPart)]
        return ModelResponse(
            text=response.text or "",
            usage=Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_input_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                reasoning_tokens=int(details.get("reasoning_tokens", 0)),
            ),
            response_id=response.provider_response_id or "",
            response_model=response.model_name or request.model,
            finish_reason=str(response.finish_reason or ""),
            tool_calls=tuple(_tool_call_message(p) for p in calls),
            framework={"pydantic_ai": payload},
        )


def _tool_call_message(part: ToolCallPart) -> dict[str, Any]:
    arguments = part.args if isinstance(part.args, str) else jsonutil.dumps(part.args or {})
    return {
        "id": part.tool_call_id,
        "type": "function",
        "function": {"name": part.tool_name, "arguments": arguments},
    }


@contextlib.contextmanager
def _http_errors() -> Iterator[None]:
    """pydantic-ai's HTTP errors as wakeline's: 429 and 5xx retriable, other 4xx terminal."""
    try:
        yield
    except ModelHTTPError as exc:
        status = exc.status_code
        kind = RetriableProviderError if status == 429 or status >= 500 else TerminalProviderError
        raise kind(str(exc), status_code=status) from exc
