"""Authentication before the body, refused ``?key=``, limited failures, security headers: the
ASGI app called directly (its ``receive`` is a spy) and through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from test_api import KEY_SPECS, VIEWER, VIEWER_SECRET, lifespan

from wakeline.api import KeyRing, create_app
from wakeline.api.guard import FailureLimiter
from wakeline.api.headers import SECURITY_HEADERS
from wakeline.runtime import ensure_topics
from wakeline.topics.embedded.log import EmbeddedLog

MIB = 1024 * 1024
BODY = b"[" + b"0," * (MIB // 2 - 2) + b"0]"  # just under the 1 MiB body limit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def api(tmp_path: Path, clock: Clock) -> AsyncIterator[FastAPI]:
    log = await EmbeddedLog.open(tmp_path / "log")
    try:
        await ensure_topics(log, partitions=2)
        app = create_app(
            log,
            state_dir=tmp_path / "api-state",
            keys=KeyRing.from_specs(KEY_SPECS),
            limiter=FailureLimiter(burst=3, per_s=0.5, clock=clock),
            unknown_run_grace_s=0.0,
        )
        async with lifespan(app):
            yield app
    finally:
        await log.close()


async def call(
    app: FastAPI, method: str, path: str, headers: dict[str, str], client: str = "10.0.0.1"
) -> tuple[int, dict[str, str], bytes, bool]:
    """Call the ASGI app with a 1 MiB body: status, headers, body and whether ``receive`` was
    ever called (the body read)."""
    path, _, query = path.partition("?")
    received = False
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        received = True
        return {"type": "http.request", "body": BODY}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"content-length", str(len(BODY)).encode()), *raw],
        "client": (client, 5000),
        "server": ("api", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    out_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], out_headers, body, received


async def test_a_keyless_post_is_refused_before_its_body_is_read(api: FastAPI) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic x"}):
        status, out, body, received = await call(api, "POST", "/v1/runs", headers)
        assert status == 401 and not received, (headers, body)
        assert out["www-authenticate"] == "Bearer" and out["connection"] == "close"
    # with a key the body is read (and parsed: a list is no StartRunRequest)
    status, _, _, received = await call(api, "POST", "/v1/runs", VIEWER)
    assert received and status == 403  # a viewer may not start runs


async def test_the_query_key_is_only_for_event_streams(api: FastAPI) -> None:
    status, _, body, received = await call(api, "GET", f"/v1/runs?key={VIEWER_SECRET}", {})
    assert status == 401 and not received
    assert b"?key= is accepted only by the event streams" in body
    status, _, body, _ = await call(api, "POST", f"/v1/runs/r/events?key={VIEWER_SECRET}", {})
    assert status == 401 and b"?key= is accepted only" in body  # a GET route only
    status, _, body, _ = await call(api, "GET", f"/v1/runs/r/events?key={VIEWER_SECRET}", {})
    assert status == 404 and b"unknown run 'r'" in body  # authenticated, then looked up


async def test_failed_authentications_are_limited_per_address(api: FastAPI, clock: Clock) -> None:
    for _ in range(3):  # the burst
        assert (await call(api, "GET", "/v1/me", {}))[0] == 401
    status, out, body, _ = await call(api, "GET", "/v1/me", {"Authorization": "Bearer guess"})
    assert status == 429 and out["retry-after"] == "2", body
    assert b"too many failed authentications from 10.0.0.1" in body
    # a correct key is not slowed, from this address or another; other addresses fail as usual
    assert (await call(api, "GET", "/v1/me", VIEWER))[0] == 200
    assert (await call(api, "GET", "/v1/me", {}, client="10.0.0.2"))[0] == 401
    clock.now += 2.0  # one token back
    assert (await call(api, "GET", "/v1/me", {}))[0] == 401
    assert (await call(api, "GET", "/v1/me", {}))[0] == 429


def test_the_limiter_forgets_the_oldest_addresses() -> None:
    limiter = FailureLimiter(burst=1, max_clients=2, clock=Clock())
    for client in ("a", "b", "c"):
        limiter.failed(client)
    assert limiter.retry_after_s("a") == 0  # forgotten
    assert limiter.retry_after_s("c") == 1


async def test_every_response_has_the_security_headers(api: FastAPI) -> None:
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        responses = [
            await http.get("/v1/runs", headers=VIEWER),  # API JSON
            await http.get("/v1/runs"),  # 401
            await http.get("/v1/runs/nope", headers=VIEWER),  # 404
            await http.get("/healthz"),
            await http.get("/openapi.json"),
            await http.get("/"),  # the dashboard
            await http.get("/app.js"),
            await http.get("/no-such-file"),
        ]
    for r in responses:
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, (r.request.url, name)
    policy = SECURITY_HEADERS["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
