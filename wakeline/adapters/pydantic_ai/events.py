"""pydantic-ai's external events (``wait_for_external_event``, and ``RequestInput`` built on
it) as wakeline gates: the engine's ``ExternalEventWaiter``, installed by
:func:`~.capability.durable` for the run's agent code.

A wait named ``name`` calls ``ask`` once with a resume token, as a journaled step (a replay
gets its answer back and never calls it again).  If ``ask`` did not answer, the run waits on
the durable gate ``event:<name>`` -- holding no task and no memory, surviving restarts -- until
the token is resolved from anywhere with :func:`resolve_external_event` (the payload, as JSON)
or :func:`fail_external_event`, or the wait's timeout (a durable timer) expires.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue
from pydantic_ai.external_events import ExternalEventError, ExternalEventWaiter

from wakeline import jsonutil
from wakeline.core.context import Context

if TYPE_CHECKING:
    from wakeline.client import Client

PREFIX = "wakeline:"


class WakelineEventWaiter(ExternalEventWaiter):
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    async def wait(
        self,
        name: str,
        *,
        ask: Callable[[str], Awaitable[JsonValue]],
        timeout: timedelta | None,  # noqa: ASYNC109 - the SDK's signature; a durable timer
    ) -> JsonValue:
        ctx, gate = self._ctx, f"event:{name}"
        token = f"{PREFIX}{ctx.run_id}:{gate}"
        answer = await ctx.step(f"{gate}.ask", ask, token)
        if answer is not None:
            return answer  # type: ignore[no-any-return]
        seconds = None if timeout is None else timeout.total_seconds()
        decision = await ctx.approval(gate, {"token": token}, timeout=seconds)
        if decision.timed_out:
            raise ExternalEventError(f"No resolution arrived within {timeout}.")
        if not decision.approved:
            raise ExternalEventError(decision.reason or f"failed by {decision.by or 'someone'}")
        return jsonutil.loads(decision.reason) if decision.reason else None


def parse_token(token: str) -> tuple[str, str]:
    """The run id and gate name of a token this waiter handed out."""
    run_id, sep, gate = token.removeprefix(PREFIX).partition(":")
    if not token.startswith(PREFIX) or not sep or not gate.startswith("event:"):
        raise ValueError(f"not a wakeline external-event token: {token!r}")
    return run_id, gate


async def resolve_external_event(client: Client, token: str, payload: Any) -> None:
    """End the wait of ``token`` with ``payload`` (JSON-able), from any process: the payload
    travels as the gate decision's reason."""
    run_id, gate = parse_token(token)
    await client.approve(run_id, gate, reason=jsonutil.dumps(payload))


async def fail_external_event(client: Client, token: str, message: str) -> None:
    """End the wait of ``token`` with a failure: ``ExternalEventError(message)`` in the run."""
    run_id, gate = parse_token(token)
    await client.reject(run_id, gate, reason=message)
