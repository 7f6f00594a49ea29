"""Model providers and the price table.

Every provider implements the model port (:class:`ModelProvider`, in ``wakeline.core.model``):
adapters only translate between it and a provider's API; durability is added around the port by
the runtime.  The SDK-based providers import their SDK on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wakeline._lazy import lazy_names
from wakeline.core.model import (
    ModelProvider,
    ModelRequest,
    ModelResponse,
    ProviderError,
    RetriableProviderError,
    TerminalProviderError,
)
from wakeline.core.pricing import BUILTIN_PRICES, ModelPrice, PriceTable
from wakeline.providers.mock import MockModel
from wakeline.schemas.usage import Usage

if TYPE_CHECKING:
    from wakeline.providers.anthropic import AnthropicProvider
    from wakeline.providers.openai_compat import OpenAICompatProvider

__all__ = [
    "BUILTIN_PRICES",
    "AnthropicProvider",
    "MockModel",
    "ModelPrice",
    "ModelProvider",
    "ModelRequest",
    "ModelResponse",
    "OpenAICompatProvider",
    "PriceTable",
    "ProviderError",
    "RetriableProviderError",
    "TerminalProviderError",
    "Usage",
]

_LAZY = {
    "AnthropicProvider": "wakeline.providers.anthropic",
    "OpenAICompatProvider": "wakeline.providers.openai_compat",
}


__getattr__ = lazy_names(__name__, _LAZY, globals())
