"""A real local HTTP server speaking the OpenAI Chat Completions and Anthropic Messages APIs.

It runs in a daemon thread of the *test* process (never inside a worker), so tests can SIGKILL
worker processes that talk to it and still inspect what it received.  Replies are a pure function
of the request body (see :func:`fake_reply`), so a replayed or resumed run sees the same answers.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from wakeline.testing.fake_llm_wire import BUILDERS, body_digest, canonical, error_body, fake_reply


class _QuietServer(ThreadingHTTPServer):
    """Clients that die mid-connection (SIGKILLed workers) are expected here, not errors."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request received (``body`` is the parsed JSON; ``completed_at`` set once written)."""

    index: int
    path: str
    model: str
    digest: str
    stream: bool
    received_at: float
    body: Mapping[str, Any]
    completed_at: float | None = None
    status: int | None = None


RequestHook = Callable[[RequestRecord], None]


class FakeLLMServer:
    """A fake OpenAI + Anthropic endpoint on ``127.0.0.1`` (random free port by default).

    Runtime knobs (thread-safe): ``latency_s`` (sleep before answering), ``chunk_delay_s``
    (between streamed events), :meth:`fail_next`, :meth:`hold` / :meth:`release`, and hooks
    ``on_request`` (before the hold gate) / ``on_complete`` called with the RequestRecord."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency_s: float = 0.0) -> None:
        self.host, self._port = host, port
        self.latency_s, self.chunk_delay_s = latency_s, 0.0
        self.stream_usage = True
        """False: like llama.cpp's server, streams end without usage (``include_usage`` is
        ignored)."""
        self.on_request: RequestHook | None = None
        self.on_complete: RequestHook | None = None
        self._cond = threading.Condition()
        self._log: list[RequestRecord] = []
        self._failures: list[int] = []
        self._gate = threading.Event()
        self._gate.set()
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> FakeLLMServer:
        if self._httpd is None:
            attrs = {"protocol_version": "HTTP/1.1", "do_POST": lambda h: self._handle(h)}
            attrs["log_message"] = lambda *args: None
            attrs["disable_nagle_algorithm"] = True  # headers and body are separate writes
            handler = type("FakeLLMHandler", (BaseHTTPRequestHandler,), attrs)
            self._httpd = httpd = _QuietServer((self.host, self._port), handler)
            httpd.daemon_threads = True
            threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Shut down: releases held requests, stops serving and closes the socket."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            self._gate.set()
            httpd.shutdown()  # returns once serve_forever has stopped
            httpd.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "FakeLLMServer is not started"
        return int(self._httpd.server_address[1])

    @property
    def openai_base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests with ``status`` in the provider's error shape; status 0
        drops the connection (a stream after a few events, else before any response)."""
        with self._cond:
            self._failures.extend([status] * n)

    def hold(self) -> None:
        """Keep new and waiting requests unanswered (received, not answered) until release."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def reset(self) -> None:
        """Forget the log, counters and pending failures; restore default behaviour."""
        with self._cond:
            self._log.clear()
            self._failures.clear()
        self.latency_s = self.chunk_delay_s = 0.0
        self.on_request = self.on_complete = None
        self._gate.set()

    @property
    def received(self) -> int:
        with self._cond:
            return len(self._log)

    @property
    def completed(self) -> int:
        """Responses fully written and flushed (error responses included)."""
        with self._cond:
            return self._done()

    def requests(self) -> list[RequestRecord]:
        with self._cond:
            return list(self._log)

    def wait(self, *, received: int = 0, completed: int = 0, timeout: float = 10.0) -> bool:
        """Block until at least ``received`` / ``completed`` requests (False on timeout)."""
        with self._cond:
            done = lambda: len(self._log) >= received and self._done() >= completed  # noqa: E731
            return self._cond.wait_for(done, timeout)

    def _done(self) -> int:
        return sum(1 for r in self._log if r.completed_at is not None)

    def _register(self, path: str, body: Mapping[str, Any]) -> tuple[RequestRecord, int | None]:
        model, stream = str(body.get("model", "")), bool(body.get("stream"))
        with self._cond:
            index = len(self._log)
            digest, now = body_digest(body), time.time()
            record = RequestRecord(index, path, model, digest, stream, now, body)
            self._log.append(record)
            failure = self._failures.pop(0) if self._failures else None
            self._cond.notify_all()
        return record, failure

    def _finish(self, record: RequestRecord, status: int) -> RequestRecord:
        with self._cond:
            done = replace(record, completed_at=time.time(), status=status)
            self._log[record.index] = done
            self._cond.notify_all()
        return done

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length)
        if len(raw) < length:  # the client died mid-request: no request was made
            h.close_connection = True
            return
        path = h.path.split("?", 1)[0]
        flavor = "anthropic" if path.endswith("/messages") else "openai"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not path.endswith(("/chat/completions", "/messages")) or not isinstance(body, dict):
            self._send(h, 404, [canonical({"error": {"message": "not found"}}).encode()])
            return
        record, failure = self._register(path, body)
        if self.on_request is not None:
            self.on_request(record)
        self._gate.wait()
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        try:
            status = self._respond(h, flavor, body, failure)
        except OSError:  # the client went away (e.g. a SIGKILLed worker), or status 0
            h.close_connection = True
            return
        done = self._finish(record, status)
        if self.on_complete is not None:
            self.on_complete(done)

    def _respond(
        self, h: BaseHTTPRequestHandler, flavor: str, body: dict[str, Any], failure: int | None
    ) -> int:
        if failure:
            self._send(h, failure, [canonical(error_body(flavor, failure)).encode()])
            return failure
        stream = bool(body.get("stream"))
        build, prefix = BUILDERS[flavor, stream]
        shown = (
            body if self.stream_usage else {k: v for k, v in body.items() if k != "stream_options"}
        )
        out = build(shown, fake_reply(body), prefix + body_digest(body)[:24])
        if failure == 0:
            if stream:
                self._send(h, 200, list(out)[:3], sse=True)
            raise ConnectionAbortedError("fail_next(status=0): connection dropped")
        self._send(h, 200, out if stream else [canonical(out).encode()], sse=stream)
        return 200

    def _send(
        self, h: BaseHTTPRequestHandler, status: int, parts: Any, *, sse: bool = False
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "text/event-stream" if sse else "application/json")
        if sse:
            h.send_header("Cache-Control", "no-cache")
            h.send_header("Connection", "close")
            h.close_connection = True
        else:
            h.send_header("Content-Length", str(len(parts[0])))
        h.end_headers()
        for part in parts:
            h.wfile.write(part)
            h.wfile.flush()
            if sse and self.chunk_delay_s > 0:
                time.sleep(self.chunk_delay_s)
