"""Session turns from the API: the turn numbers come from the API's views, once they have
folded the events topic up to its end as of the request (see :mod:`wakeline.sessions`)."""

from __future__ import annotations

from wakeline.api.auth import Principal
from wakeline.api.errors import ApiError
from wakeline.api.state import ApiState
from wakeline.client import Client, RunHandle
from wakeline.core.sessions import SessionError
from wakeline.projections.sessions import SessionRow
from wakeline.projections.views import Views
from wakeline.schemas.commands import StartRun


async def caught_up(api: ApiState) -> None:
    """Wait until the API's views have folded every events partition up to its end now."""
    topic = api.topics.events
    count = await api.log.partition_count(topic)
    ends = {p: await api.log.end_offset(topic, p) for p in range(count)}

    def folded(views: Views) -> bool:
        store = views.queries.store
        return all(store.offset(topic, p) >= end for p, end in ends.items())

    try:
        await api.projector.wait_until(folded, timeout_s=max(api.unknown_run_grace_s, 0.1))
    except TimeoutError:
        raise ApiError(503, "the API's views are behind the log; try again") from None


class SessionsClient(Client):
    """The caller's client, reading sessions from the API's views."""

    def __init__(self, api: ApiState, who: Principal) -> None:
        super().__init__(api.log, topics=api.topics, issuer=who.name, signer=api.signer)
        self._api = api

    async def _session_row(self, session_id: str) -> SessionRow | None:
        await caught_up(self._api)
        return self._api.views.session(session_id)


def session_problem(exc: SessionError) -> ApiError:
    """409 for a turn that must wait for the one before, else 422."""
    return ApiError(409 if "has not ended" in str(exc) else 422, str(exc))


async def start_turn(
    api: ApiState, who: Principal, payload: StartRun, session: str, run_id: str | None
) -> RunHandle:
    client = SessionsClient(api, who)
    try:
        return await client.start_turn(payload, session, await client.session(session), run_id)
    except SessionError as exc:
        raise session_problem(exc) from None
