"""A chat model whose calls are wakeline model calls: for LangGraph graphs of your own.

A ``create_agent`` agent needs only :class:`~.middleware.WakelineMiddleware`.  A plain
``StateGraph`` has no middleware: wrap its chat model in :class:`DurableChatModel` (each call
inside ``durable(ctx)`` becomes a journaled ``ctx.llm`` call made through the wrapped model)
and give its ``ToolNode`` the middleware's tool hook
(``ToolNode(tools, awrap_tool_call=WakelineMiddleware().awrap_tool_call)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage, message_to_dict, messages_from_dict
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

from wakeline.adapters.langchain.middleware import ASYNC_ONLY
from wakeline.adapters.langchain.model import (
    FrameworkModel,
    current_run,
    identity_of,
    normalized,
    plain,
)
from wakeline.core.model import TerminalProviderError


class DurableChatModel(BaseChatModel):
    """``DurableChatModel(inner=ChatOpenAI(...))``: ``inner`` outside a wakeline run; inside
    ``durable(ctx)`` each call is journaled (priced as a call of ``inner``'s provider) and
    replayed from the journal.  The journaled request: the messages without their ids, the
    bound tools and call settings, and the stop sequences."""

    inner: BaseChatModel

    @property
    def _llm_type(self) -> str:
        return self.inner._llm_type

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self.inner._get_ls_params(stop=stop, **kwargs)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The tools in ``inner``'s own format, bound to this model."""
        bound = self.inner.bind_tools(tools, tool_choice=tool_choice, **kwargs)
        return self.bind(**dict(getattr(bound, "kwargs", {})))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if current_run.get() is not None:
            raise RuntimeError(ASYNC_ONLY)
        return self.inner._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        inner, ctx = self.inner, current_run.get()
        if ctx is None:
            return await inner._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)

        async def call() -> tuple[AIMessage, dict[str, Any]]:
            done = await inner._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
            ai = done.generations[0].message if done.generations else None
            if not isinstance(ai, AIMessage):
                raise TerminalProviderError("the LangChain model call returned no AIMessage")
            return ai, encode_result(done)

        identity = identity_of(inner)
        result = await ctx.llm(
            normalized(messages),
            model=identity["model"],
            via=FrameworkModel(identity["provider"], call),
            max_tokens=identity["max_tokens"],
            temperature=identity["temperature"],
            stream=identity["stream"],
            tools=plain(kwargs.get("tools") or []),
            settings=plain({k: v for k, v in kwargs.items() if k != "tools"}),
            parameters=plain({"stop": stop}),
        )
        return decode_result(result.message["framework"]["langchain"])


def encode_result(result: ChatResult) -> dict[str, Any]:
    out: dict[str, Any] = plain(
        {
            "generations": [
                {"message": message_to_dict(g.message), "info": g.generation_info}
                for g in result.generations
            ],
            "llm_output": result.llm_output,
        }
    )
    return out


def decode_result(payload: Mapping[str, Any]) -> ChatResult:
    generations = [
        ChatGeneration(message=message, generation_info=g.get("info"))
        for g in payload["generations"]
        for message in messages_from_dict([g["message"]])
    ]
    return ChatResult(generations=generations, llm_output=payload.get("llm_output"))
