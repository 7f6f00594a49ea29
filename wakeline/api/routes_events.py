"""A run's events as Server-Sent Events: its history, then live, ending after the terminal
event.  Each journal event is one SSE message whose ``id`` is the event's ``seq``; a client
that reconnects with ``Last-Event-ID: N`` gets the events after ``N``, none twice.

Message kinds: the default ``message`` (a journal event, with ``id``), ``notice`` (drift,
rejection, resume: facts about the run outside its journal, no ``id``), ``delta`` (a piece of
the text of a model call that is still streaming, no ``id``: ``{run_id, seq, index, text}``
where ``seq`` is the call's ``ModelCallRequested``; never sent after the call's result),
``end`` (the stream is over: stop reconnecting) and ``stream-error`` (the last message of a
stream that failed, e.g. ``"reason": "overflow"`` when the client read too slowly: reconnect
with ``Last-Event-ID``).  ``: keep-alive`` comments flow while a run waits.

Streams share one follower per partition (:mod:`wakeline.following`); each API key may have
``max_streams_per_key`` open at once (429 beyond).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from wakeline.api.auth import AUTH_RESPONSES, StreamViewerKey
from wakeline.api.errors import ApiError
from wakeline.api.hub import OverflowedError, StreamSlots, Subscription
from wakeline.api.routes_runs import RunId
from wakeline.api.state import Api, ApiState
from wakeline.schemas.commands import Notice
from wakeline.schemas.deltas import Delta
from wakeline.schemas.events import Event
from wakeline.topics.partitioner import partition_for
from wakeline.watching import RunUpdate, watch_run

router = APIRouter(prefix="/v1", tags=["events"], responses=AUTH_RESPONSES)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
RETRY_MS = 2000


@router.get(
    "/runs/{run_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "the run's events (SSE)"},
        204: {"description": "nothing after Last-Event-ID: the run has ended"},
        400: {"description": "bad Last-Event-ID"},
        404: {"description": "unknown run"},
        429: {"description": "the key has its limit of open event streams"},
    },
)
async def run_events(
    run_id: RunId,
    who: StreamViewerKey,
    api: Api,
    last_event_id: Annotated[
        str | None, Header(description="resume after this seq (sent by EventSource)")
    ] = None,
    deltas: Annotated[
        bool, Query(description="send `delta` messages while model calls stream")
    ] = True,
) -> Response:
    """The run's events, history then live (viewer; ``?key=`` works for EventSource).

    A run the server's views do not know yet (just started) is waited for a few seconds.
    """
    after = _after(last_event_id)
    row = await api.find_run(run_id, wait_s=api.unknown_run_grace_s)
    if row is None:
        raise ApiError(404, f"unknown run {run_id!r}")
    if row.ended and after >= row.last_seq:
        return Response(status_code=204)  # tells EventSource to stop reconnecting
    if not api.streams.acquire(who.name):
        limit = api.streams.per_key
        raise ApiError(
            429,
            f"key {who.name!r} has {limit} event streams open, the most it may; close one",
            headers={"Retry-After": "5"},
        )
    partition = partition_for(run_id.encode(), await api.log.partition_count(api.topics.events))
    stream = _stream(api, run_id, partition, row.start_offset or 0, after, deltas)
    return _SlotResponse(api.streams, who.name, stream)


class _SlotResponse(StreamingResponse):
    """An event stream that holds one of its key's stream slots until it is over."""

    def __init__(self, slots: StreamSlots, name: str, content: AsyncIterator[str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=SSE_HEADERS)
        self._slots = slots
        self._name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slots.release(self._name)


def _after(header: str | None) -> int:
    if header is None or not header.strip():
        return -1
    try:
        value = int(header.strip())
    except ValueError:
        raise ApiError(400, "Last-Event-ID must be an event seq (an integer)") from None
    if value < -1:
        raise ApiError(400, "Last-Event-ID must be -1 or more")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class _Failed:
    message: str
    reason: str = "error"


_END = object()


async def _stream(
    api: ApiState, run_id: str, partition: int, from_offset: int, after: int, deltas: bool
) -> AsyncIterator[str]:
    queue: asyncio.Queue[RunUpdate | _Failed | object] = asyncio.Queue(maxsize=256)
    subscription = api.hub.subscribe()
    task = asyncio.create_task(
        _pump(api, subscription, queue, run_id, partition, from_offset, deltas),
        name=f"sse-{run_id}",
    )
    last_seq = after
    status = "running"
    try:
        yield f"retry: {RETRY_MS}\n\n"
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=api.heartbeat_s)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if subscription.overflowed.is_set():  # the client read too slowly: drop it
                item = _Failed(_overflow(subscription), "overflow")
            if isinstance(item, RunUpdate):
                if item.event is not None:
                    if item.event.seq <= after:
                        continue
                    last_seq = item.event.seq
                    if item.event.is_terminal:
                        status = _terminal_status(item.event)
                    yield sse(event_json(item.event), event_id=item.event.seq)
                elif item.notice is not None:
                    status = _NOTICE_STATUS.get(item.notice.type, status)
                    yield sse(notice_json(item.notice), event="notice")
                elif item.delta is not None:
                    yield sse(delta_json(item.delta), event="delta")
                elif item.skipped is not None:  # an undecodable record keyed by the run
                    yield sse(
                        {"detail": str(item.skipped), **asdict(item.skipped)}, event="skipped"
                    )
            elif isinstance(item, _Failed):
                yield sse({"detail": item.message, "reason": item.reason}, event="stream-error")
                return
            else:
                yield sse({"run_id": run_id, "status": status, "last_seq": last_seq}, event="end")
                return
    finally:
        subscription.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _pump(
    api: ApiState,
    subscription: Subscription,
    queue: asyncio.Queue[RunUpdate | _Failed | object],
    run_id: str,
    partition: int,
    from_offset: int,
    deltas: bool,
) -> None:
    """The run's updates, read through ``subscription``, into ``queue``; then the end."""
    updates = watch_run(
        subscription,
        api.topics,
        run_id,
        partition,
        from_offset=from_offset,
        poll_s=api.watch_poll_s,
        deltas=deltas,
        signer=api.signer,
        source=api.log,
    )
    try:
        async for update in updates:
            await queue.put(update)
        await queue.put(_END)
    except OverflowedError:
        await queue.put(_Failed(_overflow(subscription), "overflow"))
    except Exception as exc:  # a log error: tell the client, end the stream
        await queue.put(_Failed(f"{type(exc).__name__}: {exc}"))


def _overflow(subscription: Subscription) -> str:
    return (
        f"the client read too slowly ({subscription.max_batches} batches of the log waited "
        "for it); the stream is closed: reconnect with Last-Event-ID to resume"
    )


_NOTICE_STATUS = {"RunDrifted": "drifted", "CommandRejected": "rejected", "RunResumed": "running"}


def _terminal_status(event: Event) -> str:
    return {"RunCompleted": "completed", "RunFailed": "failed", "RunCancelled": "cancelled"}.get(
        event.type, "ended"
    )


def sse(data: Any, *, event: str | None = None, event_id: int | None = None) -> str:
    """One SSE message (``data`` as one line of JSON)."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


def plain(value: Any) -> Any:
    """JSON-able form of schema dataclasses (decimals as exact text, enums by value)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return value


def event_json(event: Event) -> dict[str, Any]:
    return {
        "run_id": event.run_id,
        "seq": event.seq,
        "time_ms": event.time_ms,
        "writer": event.writer,
        "type": event.type,
        "payload": plain(event.payload),
    }


def notice_json(notice: Notice) -> dict[str, Any]:
    return {
        "run_id": notice.run_id,
        "time_ms": notice.time_ms,
        "writer": notice.writer,
        "type": notice.type,
        "payload": plain(notice.payload),
    }


def delta_json(delta: Delta) -> dict[str, Any]:
    return {"run_id": delta.run_id, "seq": delta.seq, "index": delta.index, "text": delta.text}
