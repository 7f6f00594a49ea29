"""Avro encode/decode cost of the events that dominate a journal."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from functools import partial

from benchmarks.registry import Profile, Row, register
from wakeline import jsonutil
from wakeline.core.model import ModelRequest
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import (
    Event,
    EventPayload,
    ModelCallCompleted,
    ModelCallRequested,
    RunStarted,
)
from wakeline.schemas.usage import Usage

RUN_ID = "0123456789abcdef0123456789abcdef"
WRITER = "bench-host-1234-abcdef"


def sample_events() -> list[Event]:
    """A run start and one model call, shaped like the steps benchmark's journal."""
    request = ModelRequest(
        model="mock-1", messages=({"role": "user", "content": "step 41"},), max_tokens=16
    )
    text = jsonutil.dumps(request.to_json())
    reply = jsonutil.dumps({"role": "assistant", "content": "mock reply to: step 41"})
    payloads: list[EventPayload] = [
        RunStarted("chain", '{"calls":200,"sleep_s":0.0}', "", "c" * 32),
        ModelCallRequested("mock", "mock-1", jsonutil.digest(text), text),
        ModelCallCompleted(
            step=83,
            provider="mock",
            model="mock-1",
            response_id="mock-" + "f" * 24,
            response_model="mock-1",
            finish_reason="stop",
            message=reply,
            usage=Usage(input_tokens=2, output_tokens=6),
            latency_us=41,
            cost_usd=Decimal("0.000012"),
        ),
    ]
    return [Event(RUN_ID, 82 + i, 1_700_000_000_000, WRITER, p) for i, p in enumerate(payloads)]


def _per_call_us(fn: Callable[[], object], iterations: int) -> float:
    for _ in range(min(200, iterations)):  # warm up
        fn()
    start = time.perf_counter_ns()
    for _ in range(iterations):
        fn()
    return (time.perf_counter_ns() - start) / iterations / 1000


@register("codec")
async def codec(profile: Profile) -> list[Row]:
    """Encode and decode each sample event ``codec_iterations`` times."""
    c = event_codec()
    n = profile.codec_iterations
    rows: list[Row] = []
    for event in sample_events():
        kind = event.type
        data = c.encode(event)
        if c.decode(data) != event:
            raise RuntimeError(f"{kind} does not round-trip")
        rows += [
            Row("codec", f"{kind} encode", _per_call_us(partial(c.encode, event), n), "us"),
            Row("codec", f"{kind} decode", _per_call_us(partial(c.decode, data), n), "us"),
            Row("codec", f"{kind} size", len(data), "B"),
        ]
    return rows
