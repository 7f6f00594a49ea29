"""A deterministic in-process model for examples, tests and benchmarks (no network).

Replies are a pure function of the request: the runtime replays and resumes runs across
processes, so nothing may depend on how often *this* instance was called (``fail_first`` is the
one deliberate exception, for exercising retries).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from wakeline.core.model import (
    DeltaSink,
    Message,
    ModelRequest,
    ModelResponse,
    RetriableProviderError,
)
from wakeline.schemas.usage import Usage

__all__ = ["MockModel", "approx_tokens"]

Replies = Sequence[str] | Callable[[ModelRequest], str]


def approx_tokens(text: str) -> int:
    """~4 characters a token, rounded up, at least 1."""
    return max(1, -(-len(text) // 4))


def _content_text(message: Message) -> str:
    content: Any = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return json.dumps(content, sort_keys=True, separators=(",", ":"))


def _last_user(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content_text(message)
    return ""


def _chunks(text: str, n: int = 3) -> list[str]:
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


class MockModel:
    """A :class:`~wakeline.core.model.ModelProvider` that answers without any I/O.

    ``replies``: a sequence (reply index = assistant messages already in the request, clamped to
    the last reply), a callable of the request, or None (``"mock reply to: <last user text>"``).
    ``fail_first``: the first N calls of this instance raise :class:`RetriableProviderError`.
    """

    def __init__(
        self,
        *,
        replies: Replies | None = None,
        latency_s: float = 0.0,
        name: str = "mock",
        fail_first: int = 0,
    ) -> None:
        if isinstance(replies, str):
            raise TypeError("replies must be a sequence of strings or a callable, not a str")
        if replies is not None and not callable(replies) and len(replies) == 0:
            raise ValueError("replies must not be empty")
        self._replies = replies
        self._latency_s = latency_s
        self._name = name
        self._failures_left = fail_first

    @property
    def name(self) -> str:
        return self._name

    def reply_for(self, request: ModelRequest) -> str:
        """The reply text for ``request`` (a pure function of it)."""
        replies = self._replies
        if replies is None:
            return f"mock reply to: {_last_user(request.messages)[:200]}"
        if callable(replies):
            return replies(request)
        turn = sum(1 for m in request.messages if m.get("role") == "assistant")
        return replies[min(turn, len(replies) - 1)]

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> ModelResponse:
        if self._latency_s > 0:
            await asyncio.sleep(self._latency_s)
        if self._failures_left > 0:
            self._failures_left -= 1
            raise RetriableProviderError("mock: injected transient failure", status_code=503)
        text = self.reply_for(request)
        if request.stream and on_delta is not None:
            for chunk in _chunks(text):
                on_delta(chunk)
        digest = hashlib.sha256(
            json.dumps(
                request.to_json(), sort_keys=True, separators=(",", ":"), default=str
            ).encode()
        ).hexdigest()
        prompt = "".join(_content_text(m) for m in request.messages)
        return ModelResponse(
            text=text,
            usage=Usage(input_tokens=approx_tokens(prompt), output_tokens=approx_tokens(text)),
            response_id=f"mock-{digest[:24]}",
            response_model=request.model,
            finish_reason="stop",
        )
