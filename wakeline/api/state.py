"""The state a request handler reads: ``request.app.state.api``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from wakeline.api.auth import KeyRing, Principal
from wakeline.api.hub import EventHub, StreamSlots
from wakeline.api.projector import Projector
from wakeline.client import Client
from wakeline.core.app import App
from wakeline.projections.queries import Queries
from wakeline.projections.rows import RunRow
from wakeline.projections.views import Views
from wakeline.topics.port import Log
from wakeline.topics.signing import RecordSigner
from wakeline.topics.specs import DEFAULT_TOPICS, Topics

DEFAULT_MAX_INPUT_BYTES = 256 * 1024
"""The workers' default limit of a start command's input."""
DEFAULT_MAX_STREAMS_PER_KEY = 32
"""Event streams one API key may have open at once."""


@dataclass
class ApiState:
    """Everything a request handler needs; ``request.app.state.api``."""

    log: Log
    keys: KeyRing
    projector: Projector
    app: App | None = None
    topics: Topics = DEFAULT_TOPICS
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    unknown_run_grace_s: float = 5.0
    """How long a request about a run the views do not know yet waits for it to appear."""
    watch_poll_s: float = 0.2
    heartbeat_s: float = 15.0
    max_streams_per_key: int = DEFAULT_MAX_STREAMS_PER_KEY
    hub: EventHub = field(init=False)
    """The shared followers of the event streams' partitions."""
    streams: StreamSlots = field(init=False)
    """The event streams open per API key."""

    def __post_init__(self) -> None:
        self.hub = EventHub(self.log, poll_s=self.watch_poll_s)
        self.streams = StreamSlots(self.max_streams_per_key)

    @property
    def signer(self) -> RecordSigner | None:
        """The record key: streams and clients skip events no holder of it appended."""
        return self.projector.signer

    @property
    def queries(self) -> Queries:
        return self.projector.queries

    @property
    def views(self) -> Views:
        """The API's views, e.g. for :meth:`~Views.costs` and :meth:`~Views.budgets`."""
        return self.projector.views

    def client(self, who: Principal) -> Client:
        """A client whose commands name the caller's key as their issuer."""
        return Client(self.log, topics=self.topics, issuer=who.name, signer=self.signer)

    def client_for_reading(self) -> Client:
        return Client(self.log, topics=self.topics, signer=self.signer)

    async def find_run(self, run_id: str, *, wait_s: float = 0.0) -> RunRow | None:
        """The run's row; waits up to ``wait_s`` for a run the views have not folded yet."""
        deadline = time.monotonic() + wait_s
        while True:
            row = self.queries.get_run(run_id)
            if row is not None or time.monotonic() >= deadline:
                return row
            await asyncio.sleep(min(0.05, max(deadline - time.monotonic(), 0.0)))


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


Api = Annotated[ApiState, Depends(api_state)]
