"""The HTTP API and dashboard of ``wakeline serve``: :func:`create_app`.

The server runs beside the workers: it publishes commands through :class:`~wakeline.Client`
(the caller's key name is the issuer), streams a run's events straight from the log, and answers
queries from projections of its own (:class:`~wakeline.api.projector.Projector`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from wakeline.api.auth import KeyRing
from wakeline.api.errors import (
    DEFAULT_MAX_BODY_BYTES,
    BodyLimitMiddleware,
    install_error_handlers,
)
from wakeline.api.guard import AuthMiddleware, FailureLimiter
from wakeline.api.headers import SecurityHeadersMiddleware
from wakeline.api.models import Health
from wakeline.api.projector import Projector
from wakeline.api.routes_budgets import router as budgets_router
from wakeline.api.routes_costs import router as costs_router
from wakeline.api.routes_events import router as events_router
from wakeline.api.routes_forks import router as forks_router
from wakeline.api.routes_governance import router as governance_router
from wakeline.api.routes_runs import router as runs_router
from wakeline.api.routes_sessions import router as sessions_router
from wakeline.api.routes_versions import router as versions_router
from wakeline.api.state import DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_STREAMS_PER_KEY, ApiState
from wakeline.core.app import App
from wakeline.topics.port import Log
from wakeline.topics.signing import RecordSigner
from wakeline.topics.specs import DEFAULT_TOPICS, Topics

STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    log: Log,
    *,
    state_dir: Path,
    keys: KeyRing,
    app: App | None = None,
    topics: Topics = DEFAULT_TOPICS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    unknown_run_grace_s: float = 5.0,
    poll_s: float = 0.2,
    heartbeat_s: float = 15.0,
    limiter: FailureLimiter | None = None,
    max_streams_per_key: int = DEFAULT_MAX_STREAMS_PER_KEY,
    signer: RecordSigner | None = None,
) -> FastAPI:
    """The API and dashboard over ``log``.

    ``state_dir``: where the API's projection store lives (a free ``api-N`` slot is taken);
    ``keys``: the accepted API keys; ``app``: the agents' app, to check starts (agent name and
    input) before anything is published -- without it the workers report bad starts;
    ``limiter``: how failed authentications are limited per client address;
    ``max_streams_per_key``: event streams one key may have open at once (429 beyond);
    ``signer``: the record key (default: the log's), so the views skip and audit checks
    report foreign appends.
    The log is not closed by the app.
    """
    projector = Projector(log, state_dir, topics=topics, poll_s=poll_s, signer=signer)
    state = ApiState(
        log=log,
        keys=keys,
        projector=projector,
        app=app,
        topics=topics,
        max_input_bytes=max_input_bytes,
        unknown_run_grace_s=unknown_run_grace_s,
        watch_poll_s=poll_s,
        heartbeat_s=heartbeat_s,
        max_streams_per_key=max_streams_per_key,
    )

    api = _fastapi(state)
    api.state.api = state
    api.state.keys = keys
    install_error_handlers(api)
    # the last added runs first: headers on everything, then the key, then the body's size
    api.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    api.add_middleware(AuthMiddleware, keys=keys, limiter=limiter)
    api.add_middleware(SecurityHeadersMiddleware)
    routers = (runs_router, forks_router, governance_router, events_router, costs_router)
    for router in (*routers, budgets_router, sessions_router, versions_router):
        api.include_router(router)
    _add_health(api, projector)
    _add_docs(api)
    if app is not None and app.agents:
        _document_agents(api, sorted(app.agents))
    api.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="dashboard")
    return api


def _fastapi(state: ApiState) -> FastAPI:
    """The FastAPI app, whose lifespan runs the API's projections and stream followers."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.projector.start()
        try:
            yield
        finally:
            await state.hub.close()
            await state.projector.stop()

    return FastAPI(
        title="wakeline",
        version="1",
        summary="Durable execution for LLM agents: runs, steps, live events and costs.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's Swagger page loads its scripts from a CDN
        redoc_url=None,
        openapi_url="/openapi.json",
    )


def _add_health(api: FastAPI, projector: Projector) -> None:
    @api.get("/healthz", tags=["health"], response_model=Health, responses={503: {"model": Health}})
    async def healthz() -> Any:
        """Liveness (no key needed): 503 when the API's projections stopped following the log."""
        ok = projector.running and projector.error is None
        body = Health(
            status="ok" if ok else "degraded",
            projections_folded=projector.folded,
            projections_error=projector.error,
        )
        return body if ok else JSONResponse(body.model_dump(), status_code=503)


def _add_docs(api: FastAPI) -> None:
    @api.get("/docs", include_in_schema=False)
    async def docs() -> RedirectResponse:
        """The OpenAPI document (no Swagger page: it would load scripts from a CDN)."""
        return RedirectResponse("/openapi.json")


def _document_agents(api: FastAPI, agents: list[str]) -> None:
    """List the known agents as examples of ``StartRunRequest.agent`` in the OpenAPI document."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        document = build()
        request = document.get("components", {}).get("schemas", {}).get("StartRunRequest")
        if request is not None:
            request["properties"]["agent"]["examples"] = agents
        return document

    setattr(api, "openapi", openapi)  # noqa: B010 -- FastAPI's documented way to customize it
