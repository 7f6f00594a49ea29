"""What a running tool can know about its call, and how it asks to be retried."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass


class RetriableToolError(Exception):
    """Raise from a tool to have the call retried (on a durable timer, same idempotency key)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """What a running tool can know about its call (see :func:`current_tool_call`)."""

    run_id: str
    seq: int
    idempotency_key: str


_current: contextvars.ContextVar[ToolCall | None] = contextvars.ContextVar(
    "wakeline_tool_call", default=None
)


def current_tool_call() -> ToolCall:
    """Inside a tool: the call's run, sequence and idempotency key (pass it to payment APIs)."""
    call = _current.get()
    if call is None:
        raise RuntimeError("current_tool_call() is only available inside a running tool")
    return call


@contextlib.contextmanager
def running_tool(call: ToolCall) -> Iterator[None]:
    """The driver runs a tool inside this, so the tool can read :func:`current_tool_call`."""
    token = _current.set(call)
    try:
        yield
    finally:
        _current.reset(token)
