"""The HTTP API under a real uvicorn server in a child process (its CPU is measured alone):

* ``api_sse_idle``: N idle Server-Sent-Event subscribers of an open run (it sleeps an hour);
  the server's CPU over a fixed window, scaled to 1,000 subscribers, beside the floor: the same
  server's CPU over the same window with no subscriber.
* ``api_auth_flood``: ``/healthz`` latency (p50) while four keyless clients post 1 MiB JSON
  bodies to ``POST /v1/runs`` (each answered 401), beside the floor: its p50 with no load.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import multiprocessing
import socket
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil

from benchmarks.harness import percentile, running_worker, scratch_dir
from benchmarks.registry import Profile, Row, register
from wakeline.core.app import App
from wakeline.core.context import Context

SECRET = "bench-viewer-secret-0123456789abcdef"
STREAM_LIMIT = 100_000
IDLE_WINDOW_S = 5.0
POSTERS = 4
FLOOD_BODY = b'{"agent":"idle","input":[' + b",".join([b"0"] * 480_000) + b"]}"


async def idle(ctx: Context, _: Any) -> None:
    await ctx.sleep(3600)


def idle_app() -> App:
    app = App(name="bench-api", default_provider="mock", default_model="mock-1")
    app.agent(idle, name="idle")
    return app


# -- the server process -------------------------------------------------------------------------


def _serve(data: str, port: int) -> None:
    asyncio.run(_serve_async(Path(data), port))


async def _serve_async(data: Path, port: int) -> None:
    import uvicorn

    from wakeline.api import KeyRing, create_app
    from wakeline.api.serve import server_config
    from wakeline.topics.embedded.log import EmbeddedLog

    log = await EmbeddedLog.open(data / "log")
    try:
        options: dict[str, Any] = {"max_streams_per_key": STREAM_LIMIT}
        accepted = inspect.signature(create_app).parameters
        extra = {k: v for k, v in options.items() if k in accepted}  # older code: no limit
        keys = KeyRing.from_specs([f"bench:viewer:{SECRET}"])
        api = create_app(log, state_dir=data / "api-state", keys=keys, **extra)
        config = server_config(api, port=port, log_level="warning", access_log=False)
        await uvicorn.Server(config).serve()
    finally:
        await log.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _server(data: Path) -> Iterator[tuple[int, psutil.Process]]:
    port = _free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(str(data), port), daemon=True
    )
    process.start()
    assert process.pid is not None
    try:
        yield port, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.join(10)


# -- raw HTTP/1.1 over asyncio streams (cheap on the client side) -------------------------------


async def _request(port: int, head: str, body: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _get(path: str, auth: bool = False) -> str:
    extra = f"Authorization: Bearer {SECRET}\r\n" if auth else ""
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n{extra}Connection: close\r\n"


async def _wait_healthy(port: int, server: psutil.Process, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.is_running():
            raise RuntimeError("the API server stopped")
        with contextlib.suppress(OSError):
            if b" 200 " in (await _request(port, _get("/healthz")))[:20]:
                return
        await asyncio.sleep(0.1)
    raise TimeoutError("the API server did not become healthy")


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _cpu_over(process: psutil.Process, window_s: float) -> float:
    """The process's CPU over ``window_s``, as a percentage of one core."""
    before = _cpu_s(process)
    await asyncio.sleep(window_s)
    return (_cpu_s(process) - before) / window_s * 100


@asynccontextmanager
async def _open_run(data: Path) -> AsyncIterator[str]:
    async with running_worker(idle_app(), data) as h:
        handle = await h.client.start_run("idle", None)
        async for update in h.client.watch(handle.run_id, from_offset=handle.from_offset):
            if update.event is not None and update.event.type == "TimerScheduled":
                break
        yield handle.run_id


async def _subscribe(port: int, run_id: str) -> asyncio.StreamWriter:
    """An SSE subscriber that has read the stream's first message and then stays idle."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"GET /v1/runs/{run_id}/events?deltas=false HTTP/1.1\r\nHost: bench\r\n"
    head += f"Authorization: Bearer {SECRET}\r\nAccept: text/event-stream\r\n\r\n"
    writer.write(head.encode())
    await writer.drain()
    seen = b""
    while b"retry:" not in seen:
        chunk = await reader.read(65536)
        if not chunk:
            raise RuntimeError(f"the SSE stream closed: {seen[:200]!r}")
        seen += chunk
    return writer


@register("api_sse_idle")
async def api_sse_idle(profile: Profile) -> list[Row]:
    """The API server's CPU with ``profile.sse_subscribers`` idle SSE subscribers."""
    n = profile.sse_subscribers
    with scratch_dir() as data:
        async with _open_run(data) as run_id:
            with _server(data) as (port, server):
                await _wait_healthy(port, server)
                await _subscribe(port, run_id)  # warm: the run is in the API's views
                floor = await _cpu_over(server, IDLE_WINDOW_S)
                writers = []
                for start in range(0, n, 100):
                    batch = [_subscribe(port, run_id) for _ in range(start, min(n, start + 100))]
                    writers += await asyncio.gather(*batch)
                await asyncio.sleep(1.0)  # settle after the connection burst
                busy = await _cpu_over(server, IDLE_WINDOW_S)
                for writer in writers:
                    writer.close()
    note = f"{n} subscribers of one sleeping run, {IDLE_WINDOW_S:.0f} s window"
    return [
        Row("api_sse_idle", "server CPU per 1,000 idle SSE", busy * 1000 / n, "% core", note),
        Row("api_sse_idle", "floor: server CPU, no subscriber", floor, "% core", note),
    ]


async def _healthz_ms(port: int, probes: int) -> list[float]:
    out: list[float] = []
    for _ in range(probes):
        start = time.perf_counter()
        await _request(port, _get("/healthz"))
        out.append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(0.02)
    return out


async def _post_forever(port: int, stop: asyncio.Event, statuses: list[bytes]) -> None:
    head = (
        "POST /v1/runs HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(FLOOD_BODY)}\r\nConnection: close\r\n"
    )
    while not stop.is_set():
        with contextlib.suppress(OSError):
            answer = await _request(port, head, FLOOD_BODY)
            statuses.append(answer[9:12])


@register("api_auth_flood")
async def api_auth_flood(profile: Profile) -> list[Row]:
    """``/healthz`` p50 while four keyless clients post 1 MiB bodies."""
    probes = max(20, profile.sse_subscribers // 10)
    with scratch_dir() as data:
        async with running_worker(idle_app(), data):
            with _server(data) as (port, server):
                await _wait_healthy(port, server)
                quiet = await _healthz_ms(port, probes)
                stop = asyncio.Event()
                statuses: list[bytes] = []
                posters = [
                    asyncio.create_task(_post_forever(port, stop, statuses)) for _ in range(POSTERS)
                ]
                await asyncio.sleep(0.5)
                loaded = await _healthz_ms(port, probes)
                stop.set()
                await asyncio.gather(*posters)
    kinds = ", ".join(sorted({s.decode(errors="replace") for s in statuses}))
    note = f"{POSTERS} keyless posters of {len(FLOOD_BODY):,} B (answers: {kinds}), {probes} probes"
    return [
        Row("api_auth_flood", "/healthz p50 under flood", statistics.median(loaded), "ms", note),
        Row("api_auth_flood", "/healthz p99 under flood", percentile(loaded, 99), "ms", note),
        Row("api_auth_flood", "floor: /healthz p50, no load", statistics.median(quiet), "ms", ""),
    ]
