"""Governed model routing: a named, ordered list of provider/model targets for a call.

``app.route("smart", ["openai:gpt-4o", "anthropic:claude-sonnet-4-5"])`` and then
``ctx.llm(messages, route="smart")``.  Each target is tried in order.  Before a target is sent
it is shown to the app's policies and checked against the run's budget; a target that is
denied is never called.  A target whose attempts fail with retriable errors (429, 5xx, a
dropped connection, its timeout) hands the call to the next.  Every move is journaled as a
``ModelRouteFallback`` and every attempt as its own ``ModelCallRequested`` (with the route's
name), so a replay walks the same targets from the journal and a reader sees why each one was
left (see :meth:`~wakeline.core.model_calls.ModelCalls.routed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class RouteError(ValueError):
    """A route is declared or used wrongly (no targets, an unknown name, ...)."""


@dataclass(frozen=True, slots=True)
class Target:
    """One provider and model a route may send a call to; ``timeout_s`` bounds each attempt
    (a timed-out attempt is a retriable failure: it may have been billed)."""

    provider: str
    model: str
    timeout_s: float | None = None

    @classmethod
    def parse(cls, target: str | Target, timeout_s: float | None = None) -> Target:
        """``"provider:model"`` (the model may contain further colons) or a :class:`Target`."""
        if isinstance(target, Target):
            return target
        provider, sep, model = target.partition(":")
        if not sep or not provider or not model:
            raise RouteError(f"route target {target!r} is not 'provider:model'")
        return cls(provider, model, timeout_s)


@dataclass(frozen=True, slots=True)
class Route:
    """A named route: its targets in order, and the attempts each gets before the next."""

    name: str
    targets: tuple[Target, ...]
    attempts: int = 1

    @classmethod
    def of(
        cls,
        name: str,
        targets: Sequence[str | Target],
        *,
        attempts: int = 1,
        timeout_s: float | None = None,
    ) -> Route:
        if not targets:
            raise RouteError(f"route {name!r} has no targets")
        if attempts < 1:
            raise RouteError(f"route {name!r}: attempts must be at least 1")
        if timeout_s is not None and timeout_s <= 0:
            raise RouteError(f"route {name!r}: timeout_s must be positive")
        parsed = tuple(Target.parse(t, timeout_s) for t in targets)
        return cls(name, parsed, attempts)
