"""A span exporter that appends each finished span to a JSON-lines file at once.

A worker process that is SIGKILLed keeps every span it ended: the test reads them back with
:func:`read_spans` and compares them with the spans of the worker that took over.  Worker
processes (:mod:`wakeline.testing.worker_process`) write their spans to the file named by
``$WAKELINE_TEST_SPANS`` (:data:`wakeline.testing.worker_process.SPANS_ENV`).  Needs the
``otel`` extra.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from wakeline.telemetry.runtime import Telemetry


class FileSpanExporter(SpanExporter):
    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self._file.write(json.dumps(as_json(span)) + "\n")
        self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()


def as_json(span: ReadableSpan) -> dict[str, Any]:
    assert span.context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": span.context.trace_id,
        "span_id": span.context.span_id,
        "parent_span_id": span.parent.span_id if span.parent is not None else None,
        "attributes": {
            k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()
        },
    }


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def telemetry(path: Path) -> Telemetry:
    """Traces only, each span written to ``path`` when it ends."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(path)))
    return Telemetry(provider)
