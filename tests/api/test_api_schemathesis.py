"""Property-based API tests: schemathesis generates requests from the app's own OpenAPI
document and sends them, with an operator key, to a live server (real uvicorn, a real worker
on the embedded log); no response may be a 5xx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from wakeline import App
from wakeline.api import KeyRing, create_app
from wakeline.api.serve import serving
from wakeline.providers.mock import MockModel
from wakeline.testing.harness import local_runtime
from wakeline.topics.port import Log

OPERATOR_SECRET = "operator-secret-fuzz-0123456789abcdefgh"
HEADERS = {"Authorization": f"Bearer {OPERATOR_SECRET}"}


def make_app() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())

    @app.agent
    async def echo(ctx: Any, text: str) -> str:
        return str((await ctx.llm(text)).text)

    return app


class LiveServer:
    """The worker, the API and uvicorn on an event loop of their own, in a thread."""

    def __init__(self, data: Path) -> None:
        self._data = data
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._main, name="api-live", daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the live API server did not start in 60 s")
        if self._error is not None:
            raise RuntimeError("the live API server failed to start") from self._error
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to __enter__
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = make_app()
        async with local_runtime(app, self._data / "log") as rt:
            api = create_app(
                rt.log,
                state_dir=self._data / "api",
                keys=KeyRing.from_specs([f"fuzz:operator:{OPERATOR_SECRET}"]),
                app=app,
                unknown_run_grace_s=0.05,
                poll_s=0.05,
            )
            async with serving(api) as url:
                self.url = url
                self._ready.set()
                await self._stop.wait()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("schemathesis")) as server:
        yield server


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document (building the app touches no log: that is the lifespan's)."""
    keys = KeyRing.from_specs([f"fuzz:operator:{OPERATOR_SECRET}"])
    api = create_app(cast(Log, None), state_dir=Path("unused"), keys=keys, app=make_app())
    return api.openapi()


schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_no_server_errors(case: Any, live_server: LiveServer) -> None:
    case.call_and_validate(
        base_url=live_server.url, headers=HEADERS, checks=[not_a_server_error], timeout=20
    )
