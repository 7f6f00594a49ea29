"""``wakeline.worker.serve`` and ``Client.open``: a worker and a client with no internal wiring
(the facade's names are pinned in ``tests/test_public_api.py``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from wakeline import App, Client, Context
from wakeline.providers.mock import MockModel
from wakeline.worker import serve


def make_app() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())

    @app.agent
    async def echo(ctx: Context, text: str) -> str:
        reply = await ctx.llm(text, max_tokens=10)
        return f"{text}: {len(reply.text) > 0}"

    return app


async def test_serve_and_client_open_on_the_embedded_log(tmp_path: Path) -> None:
    stop = asyncio.Event()
    worker = asyncio.create_task(serve(make_app(), data=tmp_path, session_timeout_s=2.0, stop=stop))
    try:
        async with await Client.open(data=tmp_path) as client:
            await client.create_topics()
            handle = await client.start_run("echo", "hi")
            assert await asyncio.wait_for(client.result(handle.run_id), 30) == "hi: True"
            log = client.log
        assert not worker.done()
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
    assert (tmp_path / "state" / "worker-0" / "instance-id").exists()  # the slot serve took
    # the client closed the log it opened: a fresh one still reads the run
    async with await Client.open(data=tmp_path, views_dir=tmp_path / "views") as client:
        assert client.log is not log
        row = await client.get(handle.run_id)
        assert row is not None and row.status == "completed"
