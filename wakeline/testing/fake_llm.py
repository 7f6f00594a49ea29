"""A real local HTTP server speaking the OpenAI Chat Completions and Anthropic Messages APIs.

It runs in a daemon thread of the *test* process (never inside a worker), so tests can SIGKILL
worker processes that talk to it and still inspect what it received.  Replies are a pure function
of the request body (see :func:`fake_reply`), so a replayed or resumed run sees the same answers.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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


@dataclass(frozen=True, slots=True)
class FakeReply:
    """What the fake model answers: text, or one tool call ``(id, name, arguments_json)``."""

    text: str
    tool_call: tuple[str, str, str] | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def body_digest(body: Any) -> str:
    """sha256 of the canonical JSON of a request body (sorted keys, compact separators)."""
    return _sha(_canonical(body))


def _tokens(text: str) -> int:
    return max(1, -(-len(text) // 4))


def _blocks(message: Mapping[str, Any]) -> list[Any]:
    content = message.get("content")
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _user_text(message: Mapping[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    texts = [b.get("text", "") for b in _blocks(message) if b.get("type") == "text"]
    return "".join(texts) if texts else _canonical(content)


def fake_reply(body: Mapping[str, Any]) -> FakeReply:
    """The answer to an OpenAI or Anthropic request body: with ``tools`` (and no tool result last)
    a call of the first tool, else ``"fake reply #<n> to <sha256[:12] of the last user text>"``,
    ``n`` = assistant messages in the request + 1."""
    messages: list[Mapping[str, Any]] = list(body.get("messages") or [])
    tools: list[Mapping[str, Any]] = list(body.get("tools") or [])
    n = sum(1 for m in messages if m.get("role") == "assistant") + 1
    prompt = _canonical([body.get("system"), messages, tools])
    tokens, many = _tokens(prompt), len(messages) >= 2
    last = messages[-1] if messages else {}
    kinds = [b.get("type") for b in _blocks(last)]
    tool_result = last.get("role") == "tool" or "tool_result" in kinds
    tool_call: tuple[str, str, str] | None = None
    if tools and messages and not tool_result:
        name = str((tools[0].get("function") or tools[0]).get("name", "tool"))
        tool_call = (f"call_{_sha(prompt)[:12]}", name, _canonical({"n": n}))
        text = ""
    else:
        users = [_user_text(m) for m in messages if m.get("role") == "user"]
        text = f"fake reply #{n} to {_sha(users[-1] if users else '')[:12]}"
    return FakeReply(
        text=text,
        tool_call=tool_call,
        input_tokens=tokens,
        output_tokens=_tokens(tool_call[2] if tool_call else text) + 3,
        cached_tokens=tokens // 4 if many else 0,
        cache_write_tokens=tokens // 8 if many else 0,
        reasoning_tokens=3,
    )


def _pieces(text: str, n: int = 4) -> list[str]:
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _openai_usage(r: FakeReply) -> dict[str, Any]:
    return dict(
        prompt_tokens=r.input_tokens,
        completion_tokens=r.output_tokens,
        total_tokens=r.input_tokens + r.output_tokens,
        prompt_tokens_details={"cached_tokens": r.cached_tokens},
        completion_tokens_details={"reasoning_tokens": r.reasoning_tokens},
    )


def _openai_body(body: Mapping[str, Any], r: FakeReply, rid: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": r.text or None}
    if r.tool_call:
        fn = {"name": r.tool_call[1], "arguments": r.tool_call[2]}
        message["tool_calls"] = [{"id": r.tool_call[0], "type": "function", "function": fn}]
    finish = "tool_calls" if r.tool_call else "stop"
    choice = {"index": 0, "message": message, "finish_reason": finish}
    head = {"id": rid, "object": "chat.completion", "created": 0, "model": body.get("model", "")}
    return {**head, "choices": [choice], "usage": _openai_usage(r)}


def _openai_chunks(body: Mapping[str, Any], r: FakeReply, rid: str) -> Iterator[bytes]:
    full = _openai_body(body, r, rid)
    head = {**full, "object": "chat.completion.chunk", "usage": None}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta else []
        return b"data: " + _canonical({**head, "choices": choices, **extra}).encode() + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    if r.tool_call:
        call = {**full["choices"][0]["message"]["tool_calls"][0], "index": 0}
        yield chunk({"tool_calls": [{**call, "function": {"name": r.tool_call[1]}}]})
        for frag in _pieces(r.tool_call[2]):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]})
    for piece in _pieces(r.text):
        yield chunk({"content": piece})
    yield chunk({"content": None}, full["choices"][0]["finish_reason"])
    if (body.get("stream_options") or {}).get("include_usage"):
        yield chunk({}, usage=full["usage"])
    yield b"data: [DONE]\n\n"


def _anthropic_body(body: Mapping[str, Any], r: FakeReply, rid: str) -> dict[str, Any]:
    if r.tool_call:
        call_id, name, args = r.tool_call
        content = [{"type": "tool_use", "id": call_id, "name": name, "input": json.loads(args)}]
    else:
        content = [{"type": "text", "text": r.text}]
    usage = dict(
        input_tokens=r.input_tokens - r.cached_tokens - r.cache_write_tokens,
        output_tokens=r.output_tokens,
        cache_read_input_tokens=r.cached_tokens,
        cache_creation_input_tokens=r.cache_write_tokens,
    )
    stop = "tool_use" if r.tool_call else "end_turn"
    head = {"id": rid, "type": "message", "role": "assistant", "model": body.get("model", "")}
    return {**head, "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage}


def _sse(kind: str, **event: Any) -> bytes:
    return f"event: {kind}\ndata: {_canonical({'type': kind, **event})}\n\n".encode()


def _anthropic_events(body: Mapping[str, Any], r: FakeReply, rid: str) -> Iterator[bytes]:
    full = _anthropic_body(body, r, rid)
    usage = {**full["usage"], "output_tokens": 1}
    start = {**full, "content": [], "stop_reason": None, "usage": usage}
    yield _sse("message_start", message=start)
    if r.tool_call:
        block = {**full["content"][0], "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in _pieces(r.tool_call[2])]
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in _pieces(r.text)]
    yield _sse("content_block_start", index=0, content_block=block)
    for delta in deltas:
        yield _sse("content_block_delta", index=0, delta=delta)
    yield _sse("content_block_stop", index=0)
    stop = {"stop_reason": full["stop_reason"], "stop_sequence": None}
    yield _sse("message_delta", delta=stop, usage={"output_tokens": r.output_tokens})
    yield _sse("message_stop")


def _error_body(flavor: str, status: int) -> dict[str, Any]:
    kinds = {429: "rate_limit_error", 529: "overloaded_error", 401: "authentication_error"}
    message = f"fake error {status}"
    if flavor == "openai":
        kind = "server_error" if status >= 500 else "invalid_request_error"
        kind = "rate_limit_exceeded" if status == 429 else kind
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}
    kind = kinds.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


_BUILDERS = {
    ("openai", False): (_openai_body, "chatcmpl-"),
    ("openai", True): (_openai_chunks, "chatcmpl-"),
    ("anthropic", False): (_anthropic_body, "msg_"),
    ("anthropic", True): (_anthropic_events, "msg_"),
}


class FakeLLMServer:
    """A fake OpenAI + Anthropic endpoint on ``127.0.0.1`` (random free port by default).

    Runtime knobs (thread-safe): ``latency_s`` (sleep before answering), ``chunk_delay_s``
    (between streamed events), :meth:`fail_next`, :meth:`hold` / :meth:`release`, and hooks
    ``on_request`` (before the hold gate) / ``on_complete`` called with the RequestRecord."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency_s: float = 0.0) -> None:
        self.host, self._port = host, port
        self.latency_s, self.chunk_delay_s = latency_s, 0.0
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
            self._send(h, 404, [_canonical({"error": {"message": "not found"}}).encode()])
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
            self._send(h, failure, [_canonical(_error_body(flavor, failure)).encode()])
            return failure
        stream = bool(body.get("stream"))
        build, prefix = _BUILDERS[flavor, stream]
        out = build(body, fake_reply(body), prefix + body_digest(body)[:24])
        if failure == 0:
            if stream:
                self._send(h, 200, list(out)[:3], sse=True)
            raise ConnectionAbortedError("fail_next(status=0): connection dropped")
        self._send(h, 200, out if stream else [_canonical(out).encode()], sse=stream)
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
