"""What :meth:`wakeline.Client.watch` reads from the partitions of a run: its events, in seq
order, and its notices, and which notice ends a watch."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from wakeline.schemas.codec import DecodeError, event_codec, notice_codec
from wakeline.schemas.commands import CommandRejected, Notice, RunDrifted, RunResumed
from wakeline.schemas.events import Event
from wakeline.topics.port import Record

Notices = list[Notice]
log = logging.getLogger("wakeline.client")


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record keyed by the run that could not be decoded: readers skip it and say where."""

    topic: str
    partition: int
    offset: int
    reason: str

    def __str__(self) -> str:
        return (
            f"skipped an undecodable record at {self.topic}[{self.partition}]@{self.offset}: "
            f"{self.reason}"
        )


def run_events(
    records: list[Record], key: bytes, expected: int
) -> tuple[list[Event], list[Skipped]]:
    """The run's events among ``records``, from seq ``expected`` on, dense (no duplicates),
    and the run's records that are not events at all (skipped, never fatal to a reader)."""
    out: list[Event] = []
    skipped: list[Skipped] = []
    for record in records:
        if record.key != key:
            continue
        try:
            event = event_codec().decode(record.value)
        except DecodeError as exc:
            skipped.append(Skipped(record.topic, record.partition, record.offset, str(exc)))
            log.warning("%s", skipped[-1])
            continue
        if event.seq == expected + len(out):
            out.append(event)
    return out, skipped


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
