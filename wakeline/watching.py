"""What :meth:`wakeline.Client.watch` reads from the partitions of a run: its events, in seq
order, and its notices, and which notice ends a watch."""

from __future__ import annotations

from wakeline.schemas.codec import DecodeError, event_codec, notice_codec
from wakeline.schemas.commands import CommandRejected, Notice, RunDrifted, RunResumed
from wakeline.schemas.events import Event
from wakeline.topics.port import Record

Notices = list[Notice]


def run_events(records: list[Record], key: bytes, expected: int) -> list[Event]:
    """The run's events among ``records``, from seq ``expected`` on, dense (no duplicates)."""
    out: list[Event] = []
    for record in records:
        if record.key != key:
            continue
        event = event_codec().decode(record.value)
        if event.seq == expected + len(out):
            out.append(event)
    return out


def final_notice(notices: Notices, *, started: bool) -> Notice | None:
    """The notice that ends a watch: a drift, or the rejection of a start (there is no run),
    unless a later resume superseded it."""
    final: Notice | None = None
    for notice in notices:
        payload = notice.payload
        if isinstance(payload, RunDrifted) or (
            isinstance(payload, CommandRejected) and not started
        ):
            final = notice
        elif isinstance(payload, RunResumed):
            final = None
    return final


def run_notice(record_key: bytes | None, value: bytes, key: bytes) -> Notice | None:
    if record_key != key:
        return None
    try:
        return notice_codec().decode(value)
    except DecodeError:
        return None
