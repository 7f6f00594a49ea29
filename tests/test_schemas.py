"""The .avsc files are the source of truth: the Python mirrors must agree with them."""

from __future__ import annotations

import copy
import dataclasses
import io
from typing import Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wakeline.schemas.codec import (
    MAGIC,
    Codec,
    DecodeError,
    command_codec,
    event_codec,
    load_schema,
    notice_codec,
    schema_fingerprint,
)
from wakeline.schemas.commands import COMMAND_TYPES, NOTICE_TYPES, Command, Notice
from wakeline.schemas.deltas import Delta, delta_codec
from wakeline.schemas.events import EVENT_TYPES, Event, ModelCallRequested, RunStarted
from wakeline.schemas.usage import Usage

AVRO_TO_PY = {
    "string": {"str"},
    "long": {"int"},
    "int": {"int"},
    "boolean": {"bool"},
    "bytes": {"bytes"},
}


def _py_types(avro: Any) -> set[str]:
    if isinstance(avro, list):
        out: set[str] = set()
        for branch in avro:
            out |= {"None"} if branch == "null" else _py_types(branch)
        return out
    if isinstance(avro, dict):
        if avro.get("logicalType") == "decimal":
            return {"Decimal"}
        if avro["type"] == "enum":
            return {str(avro["name"])}
        if avro["type"] == "record":
            return {avro["name"]}
        return _py_types(avro["type"])
    return AVRO_TO_PY[avro]


def _annotation_types(annotation: str) -> set[str]:
    return {part.strip() for part in annotation.split("|")}


@pytest.mark.parametrize(
    ("file", "envelope", "types"),
    [
        ("event.avsc", Event, EVENT_TYPES),
        ("command.avsc", Command, COMMAND_TYPES),
        ("notice.avsc", Notice, NOTICE_TYPES),
    ],
)
def test_python_mirrors_match_the_avro_schemas(file: str, envelope: Any, types: Any) -> None:
    schema = load_schema(file)
    env_fields = [f.name for f in dataclasses.fields(envelope)]
    assert env_fields == [f["name"] for f in schema["fields"]]
    union = next(f["type"] for f in schema["fields"] if f["name"] == "payload")
    assert [r["name"] for r in union] == [t.__name__ for t in types]
    records = {r["name"]: r for r in union}
    for cls in types:
        avro_fields = records[cls.__name__]["fields"]
        py_fields = dataclasses.fields(cls)
        assert [f.name for f in py_fields] == [f["name"] for f in avro_fields], cls
        for py, avro in zip(py_fields, avro_fields, strict=True):
            assert _annotation_types(str(py.type)) == _py_types(avro["type"]), (cls, py.name)
            has_default = py.default is not dataclasses.MISSING
            assert has_default == ("default" in avro), (cls, py.name)
            if has_default:
                assert py.default == avro["default"], (cls, py.name)


def test_delta_mirrors_its_schema() -> None:
    schema = load_schema("delta.avsc")
    py_fields = dataclasses.fields(Delta)
    assert [f.name for f in py_fields] == [f["name"] for f in schema["fields"]]
    for py, avro in zip(py_fields, schema["fields"], strict=True):
        assert _annotation_types(str(py.type)) == _py_types(avro["type"]), py.name
        assert py.default is dataclasses.MISSING and "default" not in avro
    delta = Delta("run", 7, 2, 123, "worker-1", "héllo ✓")
    data = delta_codec().encode(delta)
    assert data[:2] == MAGIC and data[2:10] == schema_fingerprint(schema)
    assert delta_codec().decode(data) == delta
    with pytest.raises(DecodeError, match="trailing bytes"):
        delta_codec().decode(data + b"\x00")
    with pytest.raises(DecodeError):
        delta_codec().decode(data[:-3])
    other = event_codec().encode(Event("r", 0, 1, "w", RunStarted("a", "{}")))
    with pytest.raises(DecodeError, match="unknown writer schema"):
        delta_codec().decode(other)


def test_usage_mirrors_its_record() -> None:
    schema = load_schema("event.avsc")
    union = next(f["type"] for f in schema["fields"] if f["name"] == "payload")
    completed = next(r for r in union if r["name"] == "ModelCallCompleted")
    usage = next(f["type"] for f in completed["fields"] if f["name"] == "usage")
    assert [f["name"] for f in usage["fields"]] == [f.name for f in dataclasses.fields(Usage)]


def test_single_object_encoding_layout() -> None:
    codec = event_codec()
    data = codec.encode(Event("r", 0, 1, "w", RunStarted("a", "{}")))
    assert data[:2] == MAGIC == b"\xc3\x01"
    assert data[2:10] == schema_fingerprint(load_schema("event.avsc"))
    body = fastavro.schemaless_reader(io.BytesIO(data[10:]), codec.schema, None)
    assert body["run_id"] == "r"  # type: ignore[index,call-overload]


def _older_event_schema() -> dict[str, Any]:
    """The event schema as an older wakeline wrote it: fewer fields and fewer event types."""
    old = copy.deepcopy(load_schema("event.avsc"))
    payload = next(f for f in old["fields"] if f["name"] == "payload")
    payload["type"] = [
        r for r in payload["type"] if r["name"] in {"RunStarted", "ModelCallRequested"}
    ]
    for record in payload["type"]:
        record["fields"] = [
            f for f in record["fields"] if f["name"] not in {"attempt", "stream", "tenant"}
        ]
    return old


def _encode_with(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(MAGIC + schema_fingerprint(schema))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def test_old_bytes_are_read_with_the_newer_reader_schema() -> None:
    old = _older_event_schema()
    old_bytes = _encode_with(
        old,
        {
            "run_id": "r1",
            "seq": 1,
            "time_ms": 5,
            "writer": "w-old",
            "payload": (
                "wakeline.ModelCallRequested",
                {"provider": "openai", "model": "m", "request_digest": "d", "request": "{}"},
            ),
        },
    )
    current = event_codec()
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint"):
        current.decode(old_bytes)
    evolved = Codec(load_schema("event.avsc"), Event, EVENT_TYPES, older=[old])
    event = evolved.decode(old_bytes)
    assert event.payload == ModelCallRequested("openai", "m", "d", "{}", stream=False, attempt=1)


@given(st.binary(max_size=64))
def test_garbage_never_decodes_silently(data: bytes) -> None:
    for codec in (event_codec(), command_codec(), notice_codec(), delta_codec()):
        try:
            codec.decode(data)
        except DecodeError:
            continue
        raise AssertionError("random bytes decoded")


def test_truncated_and_padded_records_are_rejected() -> None:
    good = event_codec().encode(Event("r", 0, 1, "w", RunStarted("a", "{}")))
    with pytest.raises(DecodeError):
        event_codec().decode(good[:-3])
    with pytest.raises(DecodeError, match="trailing bytes"):
        event_codec().decode(good + b"\x00")
