"""The trace of a run, a pure function of its run id, and trace context in record headers.

:func:`run_trace_id` and :func:`run_root_span_id` let every worker that touches a run --
before or after a crash -- parent its spans to the same ``invoke_agent`` root without reading
anything.  :func:`current_trace_headers` stamps the caller's span on a command record;
:func:`producer_links` links the span that handles it back.  Imports no SDK unless installed.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
from typing import TYPE_CHECKING

from wakeline.topics.port import Record

try:
    from opentelemetry import propagate, trace
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    HAVE_OTEL = True
except ImportError:  # pragma: no cover - the ``otel`` extra is not installed
    HAVE_OTEL = False

if TYPE_CHECKING:
    from opentelemetry.trace import Link

Headers = tuple[tuple[str, bytes], ...]
forced_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "wakeline_forced_ids", default=None
)
"""Set while a run's root span is created: the ``(trace id, span id)`` :class:`RunIds` gives."""


def _digest(prefix: str, run_id: str) -> bytes:
    return hashlib.sha256(f"{prefix}{run_id}".encode()).digest()


@functools.lru_cache(maxsize=4096)
def run_trace_id(run_id: str) -> int:
    """The run's trace id: the first 16 bytes of sha256("wakeline-trace:" + run_id)."""
    return int.from_bytes(_digest("wakeline-trace:", run_id)[:16], "big") or 1


@functools.lru_cache(maxsize=4096)
def run_root_span_id(run_id: str) -> int:
    """The span id of the run's ``invoke_agent`` root: 8 bytes of sha256("wakeline-root:"...)."""
    return int.from_bytes(_digest("wakeline-root:", run_id)[:8], "big") or 1


def traceparent(trace_id: int, span_id: int) -> str:
    """A W3C ``traceparent`` header value (sampled)."""
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def current_trace_headers() -> Headers:
    """``traceparent`` (and ``tracestate``) of the caller's current span, to stamp on a command
    record so the worker's ``process`` span links back to it; ``()`` without a current span."""
    if not HAVE_OTEL or not trace.get_current_span().get_span_context().is_valid:
        return ()
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple((k, v.encode()) for k, v in carrier.items() if k in ("traceparent", "tracestate"))


def producer_links(record: Record) -> list[Link]:
    """A link to the producer's span named by the record's ``traceparent`` header, if any."""
    carrier = {
        name: value.decode("latin-1")
        for name, value in record.headers
        if name in ("traceparent", "tracestate")
    }
    if "traceparent" not in carrier:
        return []
    producer = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    return [trace.Link(producer)] if producer.is_valid else []


if HAVE_OTEL:

    class RunIds(IdGenerator):
        """Ids of the SDK, except while a run's root span is created (forced ids)."""

        def __init__(self, inner: IdGenerator) -> None:
            self.inner = inner

        def generate_span_id(self) -> int:
            forced = forced_ids.get()
            return forced[1] if forced is not None else self.inner.generate_span_id()

        def generate_trace_id(self) -> int:
            forced = forced_ids.get()
            return forced[0] if forced is not None else self.inner.generate_trace_id()
