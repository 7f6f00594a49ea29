"""A model provider that streams its reply slowly, in words (for the live-delta tests)."""

from __future__ import annotations

import asyncio

from wakeline.core.model import DeltaSink, ModelRequest, ModelResponse
from wakeline.schemas.usage import Usage


def reply_for(request: ModelRequest) -> str:
    prompt = str(request.messages[-1].get("content", ""))
    return " ".join(f"w{i}-{prompt}" for i in range(8))


class SlowStream:
    """Replies ``reply_for(request)``; a streamed call sends one word every ``delay_s``."""

    def __init__(self, delay_s: float = 0.1, *, name: str = "slow") -> None:
        self._delay_s = delay_s
        self._name = name
        self.calls = 0

    @property
    def name(self) -> str:
        return self._name

    async def complete(
        self, request: ModelRequest, *, on_delta: DeltaSink | None = None
    ) -> ModelResponse:
        self.calls += 1
        text = reply_for(request)
        words = text.split(" ")
        for i, word in enumerate(words):
            await asyncio.sleep(self._delay_s)
            if request.stream and on_delta is not None:
                on_delta(word if i == 0 else " " + word)
        return ModelResponse(
            text=text,
            usage=Usage(input_tokens=4, output_tokens=len(words)),
            response_id=f"slow-{abs(hash(text)) % 10**8}",
            response_model=request.model,
            finish_reason="stop",
        )
