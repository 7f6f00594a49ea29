"""Model providers and the price table.

Every provider implements the model port (:class:`ModelProvider`, in ``wakeline.core.model``):
adapters only translate between it and a provider's API; durability is added around the port by
the runtime.  The SDK-based providers import their SDK on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wakeline.providers' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
