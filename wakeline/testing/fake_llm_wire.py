"""What the fake LLM server answers: replies as a pure function of the request body, in the
OpenAI Chat Completions and Anthropic Messages wire formats (plain and streamed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


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


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def body_digest(body: Any) -> str:
    """sha256 of the canonical JSON of a request body (sorted keys, compact separators)."""
    return _sha(canonical(body))


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
    return "".join(texts) if texts else canonical(content)


def fake_reply(body: Mapping[str, Any]) -> FakeReply:
    """The answer to an OpenAI or Anthropic request body: with ``tools`` (and no tool result last)
    a call of the first tool, else ``"fake reply #<n> to <sha256[:12] of the last user text>"``,
    ``n`` = assistant messages in the request + 1, followed by ``" as <sha256[:8]>"`` of the
    system prompt if the request has one (so the answer depends on it)."""
    messages: list[Mapping[str, Any]] = list(body.get("messages") or [])
    tools: list[Mapping[str, Any]] = list(body.get("tools") or [])
    n = sum(1 for m in messages if m.get("role") == "assistant") + 1
    prompt = canonical([body.get("system"), messages, tools])
    tokens, many = _tokens(prompt), len(messages) >= 2
    last = messages[-1] if messages else {}
    kinds = [b.get("type") for b in _blocks(last)]
    tool_result = last.get("role") == "tool" or "tool_result" in kinds
    tool_call: tuple[str, str, str] | None = None
    if tools and messages and not tool_result:
        name = str((tools[0].get("function") or tools[0]).get("name", "tool"))
        tool_call = (f"call_{_sha(prompt)[:12]}", name, canonical({"n": n}))
        text = ""
    else:
        users = [_user_text(m) for m in messages if m.get("role") == "user"]
        text = f"fake reply #{n} to {_sha(users[-1] if users else '')[:12]}"
        system = _system_text(body, messages)
        text += f" as {_sha(system)[:8]}" if system else ""
    return FakeReply(
        text=text,
        tool_call=tool_call,
        input_tokens=tokens,
        output_tokens=_tokens(tool_call[2] if tool_call else text) + 3,
        cached_tokens=tokens // 4 if many else 0,
        cache_write_tokens=tokens // 8 if many else 0,
        reasoning_tokens=3,
    )


def _system_text(body: Mapping[str, Any], messages: list[Mapping[str, Any]]) -> str:
    """The system prompt: Anthropic's ``system``, or the OpenAI system messages' text."""
    anthropic = body.get("system")
    if anthropic:
        return _user_text({"content": anthropic})
    return "\n".join(_user_text(m) for m in messages if m.get("role") in ("system", "developer"))


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
        return b"data: " + canonical({**head, "choices": choices, **extra}).encode() + b"\n\n"

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
    return f"event: {kind}\ndata: {canonical({'type': kind, **event})}\n\n".encode()


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


def error_body(flavor: str, status: int) -> dict[str, Any]:
    kinds = {429: "rate_limit_error", 529: "overloaded_error", 401: "authentication_error"}
    message = f"fake error {status}"
    if flavor == "openai":
        kind = "server_error" if status >= 500 else "invalid_request_error"
        kind = "rate_limit_exceeded" if status == 429 else kind
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}
    kind = kinds.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


BUILDERS = {
    ("openai", False): (_openai_body, "chatcmpl-"),
    ("openai", True): (_openai_chunks, "chatcmpl-"),
    ("anthropic", False): (_anthropic_body, "msg_"),
    ("anthropic", True): (_anthropic_events, "msg_"),
}
