"""Live text deltas of pydantic-ai's streamed model requests, forwarded to wakeline's.

A streamed request's events are consumed inside its durable unit by the handler pydantic-ai
asks the engine for (``_model_stream_event_handler``, the extension point engines override:
Temporal publishes from it too).  Wakeline's wraps the user's handler: every text it sees go
by (a text part's first content, then its deltas) goes to the delta sink of the wakeline call
being sent (:class:`~.backend.FrameworkModel` sets it), so ``Client.watch(deltas=True)`` shows
the text as it arrives; the journal keeps the final response, which is what a replay returns.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from pydantic_ai.agent import EventStreamHandler
from pydantic_ai.messages import PartDeltaEvent, PartStartEvent, TextPart, TextPartDelta
from pydantic_ai.tools import RunContext

from wakeline.core.model import DeltaSink

delta_sink: contextvars.ContextVar[DeltaSink | None] = contextvars.ContextVar(
    "wakeline_pydantic_ai_delta_sink", default=None
)
"""Where the text of the model request being sent goes (set for the request's body)."""


def forwarding(handler: EventStreamHandler[Any] | None) -> EventStreamHandler[Any]:
    """``handler`` (or none) with the stream's text also sent to :data:`delta_sink`; the
    events the handler leaves unread are read here, so every delta is forwarded."""

    async def forward(run_context: RunContext[Any], events: AsyncIterable[Any]) -> None:
        teed = _tee(events)
        if handler is not None:
            await handler(run_context, teed)
        async for _ in teed:  # what the handler did not read
            pass

    return forward


async def _tee(events: AsyncIterable[Any]) -> AsyncIterator[Any]:
    async for event in events:
        text = _text_of(event)
        sink = delta_sink.get()
        if text and sink is not None:
            sink(text)
        yield event


def _text_of(event: object) -> str:
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        return event.part.content
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        return event.delta.content_delta
    return ""
