"""``wakeline diff RUN_A RUN_B``: where two runs part ways, and how their steps differ.

Steps are paired in the order the runs opened them (the n-th step of A with the n-th of B).
The first divergence is the first pair whose requests differ in what must match on replay
(the step kind, its model or tool, the request digest: :func:`wakeline.core.steps.identity`),
or where one run has a step the other does not.  Every pair is also compared on its prompt
and on what it produced: the output, tokens and cost (latency is shown beside them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from wakeline import jsonutil
from wakeline.core.steps import identity, kind_of, opens_step
from wakeline.schemas.events import (
    Event,
    ModelCallCompleted,
    ModelCallRequested,
    ToolCallCompleted,
    ToolCallRequested,
)


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a run as the diff sees it."""

    seq: int
    kind: str
    identity: tuple[Any, ...]
    prompt: str = ""
    output: str = ""
    tokens: tuple[int, int] | None = None
    cost: Decimal | None = None
    latency_ms: float | None = None

    def compared(self) -> dict[str, Any]:
        """What a pair of steps is compared on (latency is shown, never a difference: two
        runs' latencies always differ)."""
        return {
            "prompt": self.prompt,
            "output": self.output,
            "tokens": self.tokens,
            "cost": self.cost,
        }


@dataclass(frozen=True, slots=True)
class StepDiff:
    index: int
    a: Step | None
    b: Step | None
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunDiff:
    first_divergence: StepDiff | None
    """The first pair whose requests differ (None: the same steps were asked for)."""
    steps: tuple[StepDiff, ...]
    """Every pair with any difference."""


def steps_of(events: Sequence[Event]) -> list[Step]:
    """A run's steps, in the order they were opened, with what they produced."""
    results = {getattr(e.payload, "step", None): e.payload for e in events}
    steps = []
    for event in events:
        if opens_step(event.payload):
            steps.append(_step(event, results.get(event.seq)))
    return steps


def _step(event: Event, result: object) -> Step:
    p = event.payload
    kind = kind_of(p)
    step = Step(event.seq, kind.name if kind else type(p).__name__, identity(p))
    if isinstance(p, ModelCallRequested):
        messages = jsonutil.loads(p.request).get("messages") or [{}]
        step = replace(step, prompt=str(messages[-1].get("content", "")))
    elif isinstance(p, ToolCallRequested):
        step = replace(step, prompt=p.args)
    if isinstance(result, ModelCallCompleted):
        text = str(jsonutil.loads(result.message).get("content") or "")
        usage = (result.usage.input_tokens, result.usage.output_tokens)
        return replace(
            step,
            output=text,
            tokens=usage,
            cost=result.cost_usd,
            latency_ms=result.latency_us / 1e3,
        )
    if isinstance(result, ToolCallCompleted):
        return replace(step, output=result.result, latency_ms=result.latency_us / 1e3)
    return step


def diff_runs(a: Sequence[Event], b: Sequence[Event]) -> RunDiff:
    steps_a, steps_b = steps_of(a), steps_of(b)
    first: StepDiff | None = None
    differing = []
    for index in range(max(len(steps_a), len(steps_b))):
        sa = steps_a[index] if index < len(steps_a) else None
        sb = steps_b[index] if index < len(steps_b) else None
        pair = StepDiff(index, sa, sb, _changes(sa, sb))
        diverged = sa is None or sb is None or sa.identity != sb.identity
        if diverged and first is None:
            first = pair
        if diverged or pair.changed:
            differing.append(pair)
    return RunDiff(first, tuple(differing))


def _changes(a: Step | None, b: Step | None) -> dict[str, tuple[Any, Any]]:
    if a is None or b is None:
        return {}
    left, right = a.compared(), b.compared()
    return {k: (left[k], right[k]) for k in left if left[k] != right[k]}
