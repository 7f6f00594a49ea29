"""Python mirror of ``delta.avsc`` and its codec: live text of streamed model calls.

Deltas are not journal events: they are best effort, kept for a short time on the deltas
topic, and the call's ``ModelCallCompleted`` holds the final message whatever they showed.
Values are Avro single-object encoded like every other wakeline record.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from functools import cache
from typing import Any

import fastavro

from wakeline.schemas.codec import MAGIC, DecodeError, load_schema, schema_fingerprint


@dataclass(frozen=True, slots=True)
class Delta:
    run_id: str
    seq: int
    """seq of the call's ``ModelCallRequested``."""
    index: int
    """0, 1, 2 ... within one attempt; 0 again when a resumed worker sends the call again."""
    time_ms: int
    writer: str
    text: str


class DeltaCodec:
    """Encodes and decodes :class:`Delta` records (no older schema versions yet)."""

    def __init__(self, schema: dict[str, Any], *, max_bytes: int = 256 * 1024) -> None:
        self.schema = fastavro.parse_schema(dict(schema))
        self.fingerprint = schema_fingerprint(schema)
        self.max_bytes = max_bytes
        self._fields = tuple(f.name for f in dataclasses.fields(Delta))

    def encode(self, delta: Delta) -> bytes:
        buf = io.BytesIO()
        buf.write(MAGIC + self.fingerprint)
        fastavro.schemaless_writer(buf, self.schema, dataclasses.asdict(delta))
        return buf.getvalue()

    def decode(self, data: bytes) -> Delta:
        if len(data) < 10 or data[:2] != MAGIC:
            raise DecodeError("not Avro single-object encoded (missing C3 01 marker)")
        if len(data) > self.max_bytes:
            raise DecodeError(f"record of {len(data)} bytes exceeds {self.max_bytes} bytes")
        if data[2:10] != self.fingerprint:
            raise DecodeError(f"unknown writer schema fingerprint {data[2:10].hex()}")
        buf = io.BytesIO(data[10:])
        try:
            record: dict[str, Any] = fastavro.schemaless_reader(  # type: ignore[assignment]
                buf, self.schema, None
            )
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise DecodeError(f"corrupt Avro body: {type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(data) - 10:
            raise DecodeError("trailing bytes after the Avro body")
        return Delta(**{name: record[name] for name in self._fields})


@cache
def delta_codec() -> DeltaCodec:
    return DeltaCodec(load_schema("delta.avsc"))
