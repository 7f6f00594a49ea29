"""Cost of model calls in USD (:class:`decimal.Decimal`), offline.

Prices come from the caller's overrides first (by model name), then from the price data bundled
with the ``genai-prices`` package (never fetched: this module does not start its updater).  An
unknown model costs ``None``, never a guess.

Token accounting follows :class:`~wakeline.core.model.Usage` (and genai-prices): the cached
and cache-write counts are *parts of* ``input_tokens``, and reasoning tokens are part of
``output_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from wakeline.schemas.usage import Usage

__all__ = ["BUILTIN_PRICES", "GENAI_PROVIDER_IDS", "MOCK_PRICE", "ModelPrice", "PriceTable"]

_MTOK = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens.  Cached reads / cache writes default to the input price."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None

    def cost(self, usage: Usage) -> Decimal:
        cached, written = _cache_parts(usage)
        uncached = max(usage.input_tokens - cached - written, 0)
        cached_price = _or(self.cached_input_per_mtok, self.input_per_mtok)
        write_price = _or(self.cache_write_per_mtok, self.input_per_mtok)
        total = (
            uncached * self.input_per_mtok
            + cached * cached_price
            + written * write_price
            + usage.output_tokens * self.output_per_mtok
        )
        return total / _MTOK

    def max_cost(
        self, input_tokens: int, max_output_tokens: int, *, cache_writes: bool = False
    ) -> Decimal:
        """All input uncached (or, with ``cache_writes``, at the dearest input rate) plus the
        full output allowance."""
        input_price = self.input_per_mtok
        if cache_writes:
            input_price = max(input_price, _or(self.cache_write_per_mtok, Decimal(0)))
        return (input_tokens * input_price + max_output_tokens * self.output_per_mtok) / _MTOK


def _or(value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else value


def _cache_parts(usage: Usage) -> tuple[int, int]:
    """(cached, cache-write) clamped so that together they never exceed ``input_tokens``."""
    cached = min(max(usage.cached_input_tokens, 0), usage.input_tokens)
    written = min(max(usage.cache_write_tokens, 0), usage.input_tokens - cached)
    return cached, written


MOCK_PRICE = ModelPrice(input_per_mtok=Decimal("1.00"), output_per_mtok=Decimal("2.00"))
BUILTIN_PRICES: Mapping[str, ModelPrice] = {"mock": MOCK_PRICE, "mock-*": MOCK_PRICE}
"""Prices of :class:`~wakeline.providers.mock.MockModel` models, so examples show real costs."""

GENAI_PROVIDER_IDS: Mapping[str, str] = {
    # OpenTelemetry ``gen_ai.provider.name`` values -> genai-prices provider ids
    "openai": "openai",
    "anthropic": "anthropic",
    "azure.ai.openai": "azure",
    "aws.bedrock": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
}
"""Names not listed here are passed to genai-prices unchanged (e.g. "groq", "deepseek")."""


class PriceTable:
    """Prices model calls: ``overrides`` (plus :data:`BUILTIN_PRICES`), then genai-prices.

    Override keys are exact model names or prefix patterns ending in ``*`` (``"mock-*"``);
    an exact name wins over patterns, and the longest matching pattern wins over shorter ones.
    """

    def __init__(self, overrides: Mapping[str, ModelPrice] | None = None) -> None:
        merged = {**BUILTIN_PRICES, **(overrides or {})}
        self._exact = {k: v for k, v in merged.items() if not k.endswith("*")}
        self._patterns = sorted(
            ((k[:-1], v) for k, v in merged.items() if k.endswith("*")),
            key=lambda kv: len(kv[0]),
            reverse=True,
        )

    def override(self, model: str) -> ModelPrice | None:
        """The override price of ``model`` (None: not overridden)."""
        if model in self._exact:
            return self._exact[model]
        return next((p for prefix, p in self._patterns if model.startswith(prefix)), None)

    def cost(
        self, provider: str, model: str, usage: Usage, *, at: datetime | None = None
    ) -> Decimal | None:
        """USD cost of one call, or None when the model's price is unknown.

        ``at`` is when the call was made (genai-prices keeps price history); default now.
        """
        price = self.override(model)
        if price is not None:
            return price.cost(usage)
        cached, written = _cache_parts(usage)
        counts = {
            "input_tokens": max(usage.input_tokens, 0),
            "output_tokens": max(usage.output_tokens, 0),
            "cache_read_tokens": cached,
            "cache_write_tokens": written,
            "output_reasoning_tokens": min(max(usage.reasoning_tokens, 0), usage.output_tokens),
        }
        return _genai_cost(provider, model, [counts], at)

    def max_cost(
        self,
        provider: str,
        model: str,
        input_tokens: int,
        max_output_tokens: int,
        *,
        cache_writes: bool = False,
        at: datetime | None = None,
    ) -> Decimal | None:
        """Worst-case USD cost of a call: all input uncached at the input price plus
        ``max_output_tokens`` at the output price.

        Prompt-cache *writes* cost more than plain input (Anthropic: 1.25x for 5 min, 2x for
        1 h); pass ``cache_writes=True`` when the request may write the cache, to price every
        input token at the dearest of those rates instead.
        """
        price = self.override(model)
        if price is not None:
            return price.max_cost(input_tokens, max_output_tokens, cache_writes=cache_writes)
        plain = {"input_tokens": input_tokens, "output_tokens": max_output_tokens}
        scenarios = [plain]
        if cache_writes:
            written = {**plain, "cache_write_tokens": input_tokens}
            scenarios += [written, {**written, "cache_write_1h_tokens": input_tokens}]
        return _genai_cost(provider, model, scenarios, at)


def _genai_cost(
    provider: str, model: str, scenarios: list[dict[str, int]], at: datetime | None
) -> Decimal | None:
    """The dearest of ``scenarios`` (genai-prices usage keyword sets); None if unknown."""
    import genai_prices  # lazily: it loads a large price snapshot

    provider_id = GENAI_PROVIDER_IDS.get(provider, provider)
    best: Decimal | None = None
    for counts in scenarios:
        usage = genai_prices.Usage(**{k: v for k, v in counts.items() if v})
        try:
            result: Any = genai_prices.calc_price(
                usage, model, provider_id=provider_id, genai_request_timestamp=at
            )
        except LookupError:
            return None
        except ValueError:  # a usage shape this model cannot price (e.g. 1 h cache writes)
            continue
        total = Decimal(result.total_price)
        best = total if best is None or total > best else best
    return best
