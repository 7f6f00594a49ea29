"""``wakeline diff RUN_A RUN_B``: where two runs part ways, and how their steps differ.

Steps are paired in the order the runs opened them (the n-th step of A with the n-th of B).
The first divergence is the first pair whose requests differ in what must match on replay
(the step kind, its model or tool, the request digest: :func:`wakeline.core.steps.identity`),
or where one run has a step the other does not.  Every pair is also compared on its prompt
(a model call's last message and its system prompt, a tool call's arguments) and on what it
produced: the output, tokens and cost (latency is shown beside them).  :func:`diff_json` is
the same as JSON (``GET /v1/diff``, the dashboard's side-by-side view).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from wakeline import jsonutil
from wakeline.core import history
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
    name: str = ""
    """The step's name in listings (its model, tool, ...)."""
    prompt: str = ""
    system: str = ""
    """A model call's system prompt (its system messages' text)."""
    output: str = ""
    tokens: tuple[int, int] | None = None
    cost: Decimal | None = None
    latency_ms: float | None = None

    def compared(self) -> dict[str, Any]:
        """What a pair of steps is compared on (latency is shown, never a difference: two
        runs' latencies always differ)."""
        return {
            "prompt": self.prompt,
            "system": self.system,
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
    pairs: tuple[StepDiff, ...] = ()
    """Every pair, the same ones included."""


def steps_of(events: Sequence[Event]) -> list[Step]:
    """A run's steps, in the order they were opened, with what they produced."""
    results = {getattr(e.payload, "step", None): e.payload for e in events}
    try:
        requests = history.expand_requests(events)
    except history.RequestHistoryError:  # a journal cut short: each request as journaled
        requests = {}
    steps = []
    for event in events:
        if opens_step(event.payload):
            steps.append(_step(event, results.get(event.seq), requests.get(event.seq)))
    return steps


def _step(event: Event, result: object, request: dict[str, Any] | None) -> Step:
    p = event.payload
    kind = kind_of(p)
    if kind is None:
        return Step(event.seq, type(p).__name__, identity(p))
    step = Step(event.seq, kind.name, identity(p), kind.label(p))
    if isinstance(p, ModelCallRequested):
        messages = (request or jsonutil.loads(p.request)).get("messages") or [{}]
        system = [_text(m) for m in messages if m.get("role") == "system"]
        step = replace(step, prompt=_text(messages[-1]), system="\n".join(system))
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
    differing, pairs = [], []
    for index in range(max(len(steps_a), len(steps_b))):
        sa = steps_a[index] if index < len(steps_a) else None
        sb = steps_b[index] if index < len(steps_b) else None
        pair = StepDiff(index, sa, sb, _changes(sa, sb))
        pairs.append(pair)
        diverged = sa is None or sb is None or sa.identity != sb.identity
        if diverged and first is None:
            first = pair
        if diverged or pair.changed:
            differing.append(pair)
    return RunDiff(first, tuple(differing), tuple(pairs))


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else jsonutil.dumps(content or "")


MAX_TEXT = 4000
"""The most characters of a prompt, system prompt or output :func:`diff_json` gives (the rest
is cut, marked with "…")."""


def diff_json(result: RunDiff, *, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
    """``result`` as JSON: the first divergence, how many pairs differ, and the pairs of steps
    from ``offset`` (at most ``limit`` of them) with the fields that differ (``changed``) and
    whether they diverged; ``next_offset`` is where the next page starts (None: no more)."""
    first = result.first_divergence
    end = len(result.pairs) if limit is None else min(offset + limit, len(result.pairs))
    page = result.pairs[offset:end]
    return {
        "first_divergence": None if first is None else _pair_json(first, True),
        "differing": len(result.steps),
        "total_pairs": len(result.pairs),
        "pairs": [_pair_json(p, first is not None and p.index == first.index) for p in page],
        "next_offset": end if end < len(result.pairs) else None,
    }


def _pair_json(pair: StepDiff, first: bool) -> dict[str, Any]:
    return {
        "index": pair.index,
        "a": _step_json(pair.a),
        "b": _step_json(pair.b),
        "changed": sorted(pair.changed),
        "diverged": pair.a is None or pair.b is None or pair.a.identity != pair.b.identity,
        "first": first,
    }


def _step_json(step: Step | None) -> dict[str, Any] | None:
    if step is None:
        return None
    tokens = None if step.tokens is None else {"input": step.tokens[0], "output": step.tokens[1]}
    return {
        "seq": step.seq,
        "kind": step.kind,
        "name": _shown(step.name),
        "prompt": _shown(step.prompt),
        "system": _shown(step.system),
        "output": _shown(step.output),
        "tokens": tokens,
        "cost_usd": None if step.cost is None else str(step.cost),
        "latency_ms": step.latency_ms,
    }


def _changes(a: Step | None, b: Step | None) -> dict[str, tuple[Any, Any]]:
    if a is None or b is None:
        return {}
    left, right = a.compared(), b.compared()
    return {k: (left[k], right[k]) for k in left if left[k] != right[k]}


def _shown(text: str) -> str:
    """``text`` cut to :data:`MAX_TEXT` characters, any lone surrogate (JSON escapes allow
    them) as ``?``."""
    cut = text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
    return cut.encode("utf-8", "replace").decode("utf-8")
