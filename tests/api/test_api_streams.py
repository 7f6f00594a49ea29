"""The limit of open event streams per key, over uvicorn (the streams' shared followers are
tested in ``tests/test_following.py``)."""

from __future__ import annotations

import asyncio

import httpx
from test_api import VIEWER, Env, env, run_row, start  # noqa: F401 -- env is a fixture

from wakeline.api.serve import serving


async def test_open_streams_are_limited_per_key(env: Env) -> None:  # noqa: F811
    run_id = await start(env.http, "napper", {"naps": 1, "seconds": 30})
    await run_row(env.http, run_id, status="waiting")
    slots = env.api.state.api.streams
    slots.per_key = 1
    url = f"/v1/runs/{run_id}/events"
    async with serving(env.api) as base, httpx.AsyncClient(base_url=base, timeout=30) as live:
        async with live.stream("GET", url, headers=VIEWER) as first:
            assert first.status_code == 200
            second = await live.get(url, headers=VIEWER)
            assert second.status_code == 429 and second.headers["retry-after"] == "5"
            assert "key 'ann' has 1 event streams open, the most it may" in second.text
            released = asyncio.create_task(slots.wait_released())
        await asyncio.wait_for(released, 10.0)  # the server saw the first one go
        assert slots.open("ann") == 0
        async with live.stream("GET", url, headers=VIEWER) as third:
            assert third.status_code == 200
