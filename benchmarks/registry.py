"""The benchmark registry: name -> async callable returning result rows.

A benchmark module registers its entries at import time::

    from benchmarks.registry import Profile, Row, register

    @register("kafka_steps")
    async def kafka_steps(profile: Profile) -> list[Row]:
        ...

and :mod:`benchmarks.run` imports it (see ``MODULES`` / ``OPTIONAL_MODULES`` there).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Row:
    """One figure of a benchmark."""

    benchmark: str
    metric: str
    value: float
    unit: str
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Profile:
    """Workload sizes; :data:`FULL` by default, :data:`QUICK` for CI smoke runs."""

    name: str
    step_runs: int
    step_calls: int
    parallel_runs: int
    parallel_calls: int
    resume_steps: int
    memory_runs: int
    codec_iterations: int
    telemetry_rounds: int
    sse_subscribers: int = 1_000


FULL = Profile("full", 5, 200, 100, 10, 10_000, 1_000, 20_000, 6)
QUICK = Profile("quick", 2, 50, 20, 5, 2_000, 200, 5_000, 3, sse_subscribers=100)

Benchmark = Callable[[Profile], Coroutine[Any, Any, list[Row]]]

BENCHMARKS: dict[str, Benchmark] = {}


def register(name: str) -> Callable[[Benchmark], Benchmark]:
    """Decorator: add a benchmark under ``name`` (unique)."""

    def add(fn: Benchmark) -> Benchmark:
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} is registered twice")
        BENCHMARKS[name] = fn
        return fn

    return add
