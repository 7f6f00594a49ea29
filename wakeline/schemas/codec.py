"""Avro single-object encoding of wakeline's envelopes, with fastavro.

Every record value on a wakeline topic is ``C3 01`` + the 8-byte CRC-64-AVRO fingerprint of the
writer schema's Parsing Canonical Form (little-endian) + the Avro binary body.  A reader finds
the writer schema by its fingerprint among the current schema and the older versions kept in
``schemas/history/`` and resolves it to the current (reader) schema, so records written by an
older wakeline stay readable after the schema evolves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any, Generic, TypeVar

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from wakeline.schemas.commands import COMMAND_TYPES, NOTICE_TYPES, Command, Notice
from wakeline.schemas.events import EVENT_TYPES, Event

MAGIC = b"\xc3\x01"
NAMESPACE = "wakeline"

E = TypeVar("E")


def record_hash(value: bytes) -> str:
    """sha256 (hex) of a record's bytes: what the next event of its run carries as ``prev``."""
    return hashlib.sha256(value).hexdigest()


class DecodeError(ValueError):
    """The bytes are not a record wakeline can read; the message says why."""


def load_schema(file_name: str, *, folder: str = "") -> dict[str, Any]:
    base = resources.files("wakeline.schemas")
    path = base.joinpath(folder, file_name) if folder else base.joinpath(file_name)
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def schema_fingerprint(schema: Mapping[str, Any]) -> bytes:
    """CRC-64-AVRO of the Parsing Canonical Form, in single-object (little-endian) byte order."""
    canonical = to_parsing_canonical_form(fastavro.parse_schema(dict(schema)))
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def _history(stem: str) -> list[dict[str, Any]]:
    folder = resources.files("wakeline.schemas").joinpath("history")
    if not folder.is_dir():
        return []
    names = sorted(p.name for p in folder.iterdir() if p.name.startswith(f"{stem}-v"))
    return [load_schema(name, folder="history") for name in names]


class _PayloadShape:
    """How one payload dataclass maps to and from its Avro record (nested records included)."""

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        self.full_name = f"{NAMESPACE}.{cls.__name__}"
        self.fields = tuple(f.name for f in dataclasses.fields(cls))
        hints = typing.get_type_hints(cls)
        self.nested: dict[str, tuple[type[Any], tuple[str, ...]]] = {}
        for name in self.fields:
            for candidate in typing.get_args(hints[name]) or (hints[name],):
                if dataclasses.is_dataclass(candidate) and isinstance(candidate, type):
                    names = tuple(f.name for f in dataclasses.fields(candidate))
                    self.nested[name] = (candidate, names)

    def to_avro(self, obj: Any) -> dict[str, Any]:
        out = {name: getattr(obj, name) for name in self.fields}
        for name, (_, names) in self.nested.items():
            value = out[name]
            if value is not None:
                out[name] = {n: getattr(value, n) for n in names}
        return out

    def from_avro(self, record: dict[str, Any]) -> Any:
        for name, (cls, _) in self.nested.items():
            if record.get(name) is not None:
                record[name] = cls(**record[name])
        return self.cls(**record)


class Codec(Generic[E]):
    """Encodes and decodes one envelope type (``Event``, ``Command`` or ``Notice``)."""

    def __init__(
        self,
        schema: Mapping[str, Any],
        envelope: type[E],
        payload_types: Sequence[type[Any]],
        *,
        older: Sequence[Mapping[str, Any]] = (),
        max_bytes: int = 1_000_000,
    ) -> None:
        self.schema = fastavro.parse_schema(dict(schema))
        self.fingerprint = schema_fingerprint(schema)
        self.max_bytes = max_bytes
        self._envelope = envelope
        env_fields = dataclasses.fields(envelope)  # type: ignore[arg-type]
        self._env_fields = tuple(f.name for f in env_fields if f.name != "payload")
        self._shapes = {cls: _PayloadShape(cls) for cls in payload_types}
        self._by_name = {shape.full_name: shape for shape in self._shapes.values()}
        self._writers: dict[bytes, Any] = {self.fingerprint: None}
        for old in older:
            self._writers.setdefault(schema_fingerprint(old), fastavro.parse_schema(dict(old)))

    def encode(self, obj: E, *, writer: bytes | None = None) -> bytes:
        """Encode with the current schema, or with the older writer schema of fingerprint
        ``writer`` (replay re-encodes a record with the schema it was written with)."""
        record = {name: getattr(obj, name) for name in self._env_fields}
        payload = obj.payload  # type: ignore[attr-defined]
        shape = self._shapes[type(payload)]
        record["payload"] = (shape.full_name, shape.to_avro(payload))
        fingerprint, schema = self.fingerprint, self.schema
        if writer is not None and writer != self.fingerprint:
            if writer not in self._writers:
                raise DecodeError(f"unknown writer schema fingerprint {writer.hex()}")
            fingerprint, schema = writer, self._writers[writer]
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(fingerprint)
        fastavro.schemaless_writer(buf, schema, record)
        return buf.getvalue()

    def decode(self, data: bytes) -> E:
        if len(data) < 10 or data[:2] != MAGIC:
            raise DecodeError("not Avro single-object encoded (missing C3 01 marker)")
        if len(data) > self.max_bytes:
            raise DecodeError(f"record of {len(data)} bytes exceeds {self.max_bytes} bytes")
        fp = data[2:10]
        if fp not in self._writers:
            raise DecodeError(f"unknown writer schema fingerprint {fp.hex()}")
        writer = self._writers[fp]
        buf = io.BytesIO(data[10:])
        try:
            record: dict[str, Any] = fastavro.schemaless_reader(  # type: ignore[assignment]
                buf,
                writer if writer is not None else self.schema,
                self.schema if writer is not None else None,
                return_record_name=True,
                return_record_name_override=True,
            )
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise DecodeError(f"corrupt Avro body: {type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(data) - 10:
            raise DecodeError("trailing bytes after the Avro body")
        name, body = record.pop("payload")
        shape = self._by_name.get(name)
        if shape is None:
            raise DecodeError(f"unknown payload type {name}")
        record["payload"] = shape.from_avro(body)
        return self._envelope(**record)


MAX_EVENT_BYTES = 64 * 1024 * 1024
"""A journal event may hold a large model request or tool result (the log stores a record
over its limit in chunks: :mod:`wakeline.topics.chunked`); commands, which clients write,
stay under 1 MB."""


@cache
def event_codec() -> Codec[Event]:
    return Codec(
        load_schema("event.avsc"),
        Event,
        EVENT_TYPES,
        older=_history("event"),
        max_bytes=MAX_EVENT_BYTES,
    )


@cache
def command_codec() -> Codec[Command]:
    return Codec(load_schema("command.avsc"), Command, COMMAND_TYPES, older=_history("command"))


@cache
def notice_codec() -> Codec[Notice]:
    return Codec(load_schema("notice.avsc"), Notice, NOTICE_TYPES, older=_history("notice"))
