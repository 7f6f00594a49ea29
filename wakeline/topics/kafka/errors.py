"""The mapping of aiokafka (and socket) errors to the log port's, and retrying on them.

Every aiokafka error the Kafka backend sees goes through :func:`map_error`: fencing (a newer
producer epoch) and lost group membership become :class:`FencedError`, size limits
:class:`RecordTooLargeError`, a missing topic :class:`UnknownTopicError`, connection problems,
timeouts and retriable broker errors :class:`LogUnavailableError`, anything else
:class:`LogError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import errors as kerrors

from wakeline.topics.port import (
    FencedError,
    LogError,
    LogUnavailableError,
    RecordTooLargeError,
    UnknownTopicError,
)

_T = TypeVar("_T")

_FENCED = (
    kerrors.ProducerFenced,
    kerrors.InvalidProducerEpoch,
    kerrors.TransactionCoordinatorFenced,
    kerrors.InvalidProducerIdMapping,
)
_MEMBERSHIP = (
    kerrors.CommitFailedError,
    kerrors.UnknownMemberIdError,
    kerrors.IllegalGenerationError,
    kerrors.RebalanceInProgressError,
)
_TOO_LARGE = (
    kerrors.MessageSizeTooLargeError,
    kerrors.RecordTooLargeError,
    kerrors.RecordListTooLargeError,
)
_UNAVAILABLE = (
    TimeoutError,
    ConnectionError,
    OSError,
    kerrors.KafkaTimeoutError,
    kerrors.KafkaConnectionError,
    kerrors.NodeNotReadyError,
    kerrors.NoBrokersAvailable,
    kerrors.RequestTimedOutError,
    kerrors.ProducerClosed,
)


def map_error(exc: BaseException, what: str) -> LogError:
    """The port error for an aiokafka (or socket) error raised while doing ``what``."""
    if isinstance(exc, LogError):
        return exc
    name = type(exc).__name__
    detail = str(exc)
    text = f"{what}: {detail if detail.startswith(name) else f'{name}: {detail}'}"
    if isinstance(exc, _FENCED):
        return FencedError(f"{text} (a newer writer with the same id exists)")
    if isinstance(exc, _MEMBERSHIP):
        return FencedError(f"{text} (the group rebalanced: another member may own it)")
    if isinstance(exc, _TOO_LARGE):
        return RecordTooLargeError(text)
    if isinstance(exc, kerrors.UnknownTopicOrPartitionError):
        return UnknownTopicError(text)
    if isinstance(exc, _UNAVAILABLE) or getattr(exc, "retriable", False):
        return LogUnavailableError(text)
    return LogError(text)


async def call_retrying(timeout_s: float, op: Callable[[], Awaitable[_T]], what: str) -> _T:
    """Run ``op``, retrying retriable errors (mapped by :func:`map_error`) for ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    pause = 0.02
    while True:
        try:
            return await op()
        except Exception as exc:
            error = map_error(exc, what)
            if not error.retriable or time.monotonic() + pause > deadline:
                raise error from exc
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


def producer_failed(producer: Any) -> bool:
    """Whether an aiokafka producer hit a fatal error (its sender task ended)."""
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    return isinstance(task, asyncio.Future) and task.done()
