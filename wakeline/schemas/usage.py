"""Token usage of a model call, as journaled in ``ModelCallCompleted`` (``event.avsc``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    """The provider reported no usage; wakeline estimated the counts (offline tokenizer)."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
