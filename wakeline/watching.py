"""Following a run (:meth:`wakeline.Client.watch`, the API's event streams): its events, in
seq order, its notices, its live deltas, and which notice ends a watch."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from wakeline.deltas import DeltaFollower
from wakeline.schemas.codec import DecodeError, event_codec, notice_codec
from wakeline.schemas.commands import CommandRejected, Notice, RunDrifted, RunResumed
from wakeline.schemas.deltas import Delta
from wakeline.schemas.events import Event
from wakeline.topics.port import LogReader, Record
from wakeline.topics.signing import RecordSigner, UntrustedRecordError
from wakeline.topics.specs import Topics

Notices = list[Notice]
log = logging.getLogger("wakeline.client")


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record keyed by the run that is not one of its events (undecodable, or unsigned
    when the reader holds the record key): readers skip it and say where."""

    topic: str
    partition: int
    offset: int
    reason: str
    untrusted: bool = False
    """Decodable, but no holder of the record key appended it."""

    def __str__(self) -> str:
        what = "an untrusted" if self.untrusted else "an undecodable"
        return f"skipped {what} record at {self.topic}[{self.partition}]@{self.offset}: " + (
            self.reason
        )


@dataclass(frozen=True, slots=True)
class RunUpdate:
    """One item of :meth:`Client.watch`: a journal event, an out-of-journal notice, or (with
    ``deltas=True``) a piece of the text of a model call that is still streaming."""

    event: Event | None = None
    notice: Notice | None = None
    delta: Delta | None = None
    skipped: Skipped | None = None
    """A record keyed by the run that is not an event (undecodable, unsigned): skipped."""


async def watch_run(
    log: LogReader,
    topics: Topics,
    run_id: str,
    partition: int,
    *,
    from_offset: int = 0,
    poll_s: float = 0.2,
    deltas: bool = False,
    signer: RecordSigner | None = None,
    source: LogReader | None = None,
    notices_from: int = 0,
) -> AsyncIterator[RunUpdate]:
    """:meth:`wakeline.Client.watch` of ``run_id`` (on ``partition``), reading ``log``; with
    ``signer``, events no holder of the record key appended are skipped.  ``source``: the
    log itself when ``log`` is a shared subscription (the last deltas of a call are read
    from it).  ``notices_from``: the notices offset to read from (a start sent again after a
    rejected one: the old rejection is not this start's)."""
    key = run_id.encode()
    follower = await DeltaFollower.start(log, topics.deltas, run_id, enabled=deltas, source=source)
    # the notices so far first: a shared subscription then follows their partition too, so a
    # notice (a rejected start has no events) wakes the wait for events below
    early, notices_at = await _run_notices(log, topics.notices, partition, key, notices_from)
    events_at = from_offset
    expected = 0
    last_event_ms = -1
    while True:
        await follower.poll()
        records = await log.read(
            topics.events, partition, events_at, timeout_s=follower.wait_s(poll_s)
        )
        if records:
            events_at = records[-1].offset + 1
        events, skipped = run_events(records, key, expected, signer)
        for bad in skipped:
            yield RunUpdate(skipped=bad)
        expected += len(events)
        if follower.closes(events):
            await follower.poll(final=True)  # the last deltas of a call that just ended
        for event in events:
            for delta in follower.before(event):
                yield RunUpdate(delta=delta)
            follower.after(event)
            last_event_ms = max(last_event_ms, event.time_ms)
            yield RunUpdate(event=event)
            if event.is_terminal:
                return
        for delta in follower.ready():
            yield RunUpdate(delta=delta)
        notices, notices_at = await _run_notices(log, topics.notices, partition, key, notices_at)
        notices, early = early + notices, []
        for notice in notices:
            yield RunUpdate(notice=notice)
        final = final_notice(notices, started=expected > 0)
        if final is not None and final.time_ms >= last_event_ms:
            return


async def _run_notices(
    log: LogReader, topic: str, partition: int, key: bytes, offset: int
) -> tuple[Notices, int]:
    """The run's notices from ``offset`` on, and the offset after them."""
    out: Notices = []
    for record in await log.read(topic, partition, offset):
        offset = record.offset + 1
        notice = run_notice(record.key, record.value, key)
        if notice is not None:
            out.append(notice)
    return out, offset


def run_events(
    records: list[Record], key: bytes, expected: int, signer: RecordSigner | None = None
) -> tuple[list[Event], list[Skipped]]:
    """The run's events among ``records``, from seq ``expected`` on, dense (no duplicates),
    and the run's records that are not events at all, or (with ``signer``) not signed:
    skipped, never fatal to a reader."""
    out: list[Event] = []
    skipped: list[Skipped] = []
    for record in records:
        if record.key != key:
            continue
        try:
            event = event_codec().decode(record.value)
            if signer is not None:
                signer.check(record)
        except (DecodeError, UntrustedRecordError) as exc:
            untrusted = isinstance(exc, UntrustedRecordError)
            where = (record.topic, record.partition, record.offset)
            skipped.append(Skipped(*where, str(exc), untrusted=untrusted))
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
