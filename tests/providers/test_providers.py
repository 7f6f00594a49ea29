"""The model adapters through the REAL openai / anthropic SDKs against a real local fake server,
the deterministic mock, and offline pricing."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from wakeline.core.model import (
    ModelProvider,
    ModelRequest,
    ModelResponse,
    RetriableProviderError,
    TerminalProviderError,
    Usage,
)
from wakeline.core.pricing import ModelPrice, PriceTable
from wakeline.providers.anthropic import AnthropicProvider, to_anthropic_messages
from wakeline.providers.mock import MockModel
from wakeline.providers.openai_compat import OpenAICompatProvider
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.fake_llm_wire import FakeReply, fake_reply

_LOOPBACK = ("127.", "localhost", "::1")
_attempted_hosts: list[str] = []

CONVERSATION = (
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": "hi there"},
    {"role": "user", "content": "what is 2 + 2?"},
)
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}
TOOLS = ({"type": "function", "function": {"name": "lookup", "parameters": SCHEMA}},)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse (and remember) any DNS lookup of a non-loopback host, and make sure no SDK picks
    up a real endpoint or key from the environment."""
    for var in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.startswith(_LOOPBACK):
            _attempted_hosts.append(name)
            raise socket.gaierror(f"non-loopback host {name!r} refused in provider tests")
        return real(host, *args, **kwargs)

    _attempted_hosts.clear()
    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield
    assert _attempted_hosts == [], f"tried to reach {_attempted_hosts}"


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as s:
        yield s


def openai_provider(server: FakeLLMServer, **kw: Any) -> OpenAICompatProvider:
    return OpenAICompatProvider(base_url=server.openai_base_url, api_key="test-key", **kw)


def anthropic_provider(server: FakeLLMServer, **kw: Any) -> AnthropicProvider:
    return AnthropicProvider(base_url=server.anthropic_base_url, api_key="test-key", **kw)


def provider_for(kind: str, server: FakeLLMServer, **kw: Any) -> ModelProvider:
    return openai_provider(server, **kw) if kind == "openai" else anthropic_provider(server, **kw)


def sent(server: FakeLLMServer) -> FakeReply:
    """What the fake server answered to the last request (a pure function of its body)."""
    assert server.wait(completed=server.received)
    return fake_reply(server.requests()[-1].body)


async def call(provider: ModelProvider, request: ModelRequest) -> tuple[ModelResponse, list[str]]:
    deltas: list[str] = []
    response = await provider.complete(request, on_delta=deltas.append)
    return response, deltas


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_text(server: FakeLLMServer, stream: bool) -> None:
    request = ModelRequest(model="gpt-4o-mini", messages=CONVERSATION, max_tokens=50, stream=stream)
    response, deltas = await call(openai_provider(server), request)
    want = sent(server)
    assert response.text == want.text and response.text.startswith("fake reply #2")
    # Usage(input, output, cached, cache_write, reasoning): cached and reasoning are reported
    assert response.usage == Usage(want.input_tokens, want.output_tokens, want.cached_tokens, 0, 3)
    assert response.usage.cached_input_tokens > 0
    assert response.finish_reason == "stop"
    assert response.response_id.startswith("chatcmpl-")
    assert response.response_model == "gpt-4o-mini"
    if stream:
        assert len(deltas) > 1 and "".join(deltas) == response.text
    else:
        assert deltas == []
    assert server.wait(completed=1)
    (record,) = server.requests()
    assert record.path == "/v1/chat/completions" and record.model == "gpt-4o-mini"
    assert record.stream is stream
    assert record.body["max_tokens"] == 50
    assert record.body.get("stream_options") == ({"include_usage": True} if stream else None)


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_text(server: FakeLLMServer, stream: bool) -> None:
    request = ModelRequest(model="claude-haiku-4-5", messages=CONVERSATION, stream=stream)
    response, deltas = await call(anthropic_provider(server), request)
    want = sent(server)
    assert response.text == want.text and response.text.startswith("fake reply #2")
    # input_tokens is normalised to the total prompt: cache reads and writes are parts of it
    cached, written = want.cached_tokens, want.cache_write_tokens
    assert response.usage == Usage(want.input_tokens, want.output_tokens, cached, written)
    assert response.usage.cached_input_tokens > 0 and response.usage.cache_write_tokens > 0
    assert response.finish_reason == "end_turn"
    assert response.response_id.startswith("msg_")
    if stream:
        assert len(deltas) > 1 and "".join(deltas) == response.text
    assert server.wait(completed=1)
    (record,) = server.requests()
    assert record.path == "/v1/messages" and record.stream is stream
    assert record.body["system"] == "be brief"
    assert record.body["max_tokens"] == 1024  # Anthropic requires it: the default
    assert [m["role"] for m in record.body["messages"]] == ["user", "assistant", "user"]


async def test_streamed_deltas_arrive_before_the_response_ends(server: FakeLLMServer) -> None:
    server.chunk_delay_s = 0.05
    arrivals: list[float] = []
    request = ModelRequest(model="m", messages=CONVERSATION, stream=True)
    started = time.monotonic()
    response = await openai_provider(server).complete(
        request, on_delta=lambda d: arrivals.append(time.monotonic())
    )
    finished = time.monotonic()
    assert len(arrivals) >= 3 and arrivals == sorted(arrivals)
    assert arrivals[0] - started < finished - started - 0.1
    assert response.text


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_tool_call_round_trip(server: FakeLLMServer, kind: str, stream: bool) -> None:
    provider = provider_for(kind, server)
    first = ModelRequest(model="m", messages=CONVERSATION, tools=TOOLS, stream=stream)
    response = await provider.complete(first)
    want = sent(server)
    assert want.tool_call is not None
    call_id, name, arguments = want.tool_call
    assert response.finish_reason == ("tool_calls" if kind == "openai" else "tool_use")
    assert response.tool_calls == (
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}},
    )
    result = {"role": "tool", "tool_call_id": call_id, "content": "4"}
    second = ModelRequest(
        model="m", messages=(*CONVERSATION, response.message(), result), tools=TOOLS, stream=stream
    )
    final = await provider.complete(second)
    assert final.text == sent(server).text
    assert final.text.startswith("fake reply #3") and final.tool_calls == ()


def test_to_anthropic_messages_shapes() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    system, messages = to_anthropic_messages(
        [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "r1"},
            {"role": "user", "content": "more"},
        ]
    )
    assert system == "sys"
    use = {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}}
    result = {"type": "tool_result", "tool_use_id": "c1", "content": "r1"}
    assert messages == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [result, {"type": "text", "text": "more"}]},
    ]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("status", [429, 500, 503, 529, 400, 404])
@pytest.mark.parametrize("stream", [False, True])
async def test_error_mapping_sends_exactly_one_request(
    server: FakeLLMServer, kind: str, status: int, stream: bool
) -> None:
    error = RetriableProviderError if status in (429, 500, 503, 529) else TerminalProviderError
    server.fail_next(5, status)  # more failures than an SDK retry loop would need
    request = ModelRequest(model="m", messages=CONVERSATION, stream=stream)
    with pytest.raises(error) as info:
        await provider_for(kind, server).complete(request)
    assert info.value.status_code == status
    assert info.value.retriable is (error is RetriableProviderError)
    assert await asyncio.to_thread(server.wait, completed=1)  # the server answered it
    assert server.received == 1  # the SDK did not retry


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_dropped_connection_is_retriable(
    server: FakeLLMServer, kind: str, stream: bool
) -> None:
    """A connection cut mid-stream (or before any answer) is never taken for a response."""
    server.fail_next(1, 0)
    request = ModelRequest(model="m", messages=CONVERSATION, stream=stream)
    with pytest.raises(RetriableProviderError):
        await provider_for(kind, server).complete(request)
    assert server.received == 1 and server.completed == 0


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_timeout_is_retriable_and_not_retried(server: FakeLLMServer, kind: str) -> None:
    server.latency_s = 1.0
    with pytest.raises(RetriableProviderError):
        await provider_for(kind, server, timeout_s=0.2).complete(
            ModelRequest(model="m", messages=CONVERSATION)
        )
    assert server.received == 1


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_connection_refused_is_retriable(server: FakeLLMServer, kind: str) -> None:
    provider = provider_for(kind, server)
    server.stop()  # nothing listens on its port any more
    with pytest.raises(RetriableProviderError) as info:
        await provider.complete(ModelRequest(model="m", messages=CONVERSATION))
    assert info.value.status_code is None


def test_api_key_rules(server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="API key"):
        OpenAICompatProvider()
    with pytest.raises(ValueError, match="API key"):
        AnthropicProvider()
    OpenAICompatProvider(base_url=server.openai_base_url)  # local servers need no key
    AnthropicProvider(base_url=server.anthropic_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    assert OpenAICompatProvider().client.api_key == "from-env"
    assert OpenAICompatProvider(name="vllm", base_url="http://127.0.0.1:1/v1").name == "vllm"


async def test_keyless_local_server_and_params(server: FakeLLMServer) -> None:
    provider = OpenAICompatProvider(base_url=server.openai_base_url, name="vllm")
    request = ModelRequest(
        model="llama",
        messages=CONVERSATION,
        max_tokens=10,
        temperature=0.5,
        params={"max_completion_tokens": 7, "seed": 3},
    )
    await provider.complete(request)
    body = server.requests()[0].body
    assert body["max_completion_tokens"] == 7 and body["seed"] == 3
    assert body["temperature"] == 0.5 and "max_tokens" not in body


@pytest.mark.parametrize(
    ("kind", "host"), [("openai", "api.openai.com"), ("anthropic", "api.anthropic.com")]
)
async def test_default_public_endpoint_is_never_reached(
    server: FakeLLMServer, kind: str, host: str
) -> None:
    """The guard works: a provider without base_url tries the public host and is refused."""
    provider: ModelProvider = (
        OpenAICompatProvider(api_key="k") if kind == "openai" else AnthropicProvider(api_key="k")
    )
    with pytest.raises(RetriableProviderError):
        await provider.complete(ModelRequest(model="m", messages=CONVERSATION))
    assert host in _attempted_hosts and server.received == 0
    _attempted_hosts.clear()


async def test_hold_release_and_hooks(server: FakeLLMServer) -> None:
    seen: list[int] = []
    server.on_request = lambda record: seen.append(record.index)
    server.hold()
    task = asyncio.create_task(
        openai_provider(server).complete(ModelRequest(model="m", messages=CONVERSATION))
    )
    assert await asyncio.to_thread(server.wait, received=1)
    # held: not answered, however long we give it (a bounded check that nothing happens)
    assert not await asyncio.to_thread(server.wait, completed=1, timeout=0.1)
    assert (server.received, server.completed, seen, task.done()) == (1, 0, [0], False)
    server.release()
    response = await task
    assert server.wait(completed=1) and response.text.startswith("fake reply")
    (record,) = server.requests()
    assert record.status == 200 and record.completed_at is not None
    assert record.completed_at >= record.received_at
    server.reset()
    assert (server.received, server.completed, server.requests()) == (0, 0, [])


def mock_request(*messages: dict[str, Any], stream: bool = False) -> ModelRequest:
    return ModelRequest(model="mock", messages=tuple(messages), stream=stream)


async def test_mock_is_a_pure_function_of_the_request() -> None:
    request = mock_request({"role": "user", "content": "hello"})
    first = await MockModel().complete(request)
    again = await MockModel().complete(request)  # a new instance: as after a restart
    assert first == again
    assert first.text == "mock reply to: hello"
    assert first.response_id.startswith("mock-") and len(first.response_id) == 5 + 24
    assert first.usage.input_tokens == 2 and first.usage.output_tokens == 5
    other = await MockModel().complete(mock_request({"role": "user", "content": "bye"}))
    assert other.response_id != first.response_id


async def test_mock_reply_index_follows_assistant_messages() -> None:
    model = MockModel(replies=["one", "two"])
    user = {"role": "user", "content": "q"}
    assistant = {"role": "assistant", "content": "a"}
    assert (await model.complete(mock_request(user))).text == "one"
    assert (await model.complete(mock_request(user))).text == "one"  # no hidden counter
    assert (await model.complete(mock_request(user, assistant, user))).text == "two"
    many = (user, assistant) * 5 + (user,)
    assert (await model.complete(mock_request(*many))).text == "two"  # clamped
    echo = MockModel(replies=lambda r: f"{len(r.messages)} messages")
    assert (await echo.complete(mock_request(user, assistant, user))).text == "3 messages"


async def test_mock_streams_failures_and_speed() -> None:
    deltas: list[str] = []
    model = MockModel(replies=["a streamed reply"], fail_first=1)
    request = mock_request({"role": "user", "content": "q"}, stream=True)
    with pytest.raises(RetriableProviderError):
        await model.complete(request, on_delta=deltas.append)
    response = await model.complete(request, on_delta=deltas.append)
    assert len(deltas) > 1 and "".join(deltas) == response.text == "a streamed reply"
    fast = MockModel()
    started = time.perf_counter()
    for _ in range(1000):
        await fast.complete(request)
    assert time.perf_counter() - started < 1.0
    slow = MockModel(latency_s=0.05)
    started = time.perf_counter()
    await slow.complete(request)
    assert time.perf_counter() - started >= 0.05


def test_pricing_overrides_and_builtin_mock_price() -> None:
    table = PriceTable({"gpt-4o-mini": ModelPrice(Decimal("10"), Decimal("20"))})
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000)
    assert table.cost("openai", "gpt-4o-mini", usage) == Decimal("20")
    assert table.cost("mock", "mock", usage) == Decimal("2")
    assert table.cost("mock", "mock-fast", usage) == Decimal("2")
    cached = ModelPrice(Decimal("2"), Decimal("4"), cached_input_per_mtok=Decimal("1"))
    part_cached = Usage(input_tokens=1_000_000, cached_input_tokens=400_000)
    assert PriceTable({"x": cached}).cost("p", "x", part_cached) == Decimal("1.6")


def test_pricing_from_genai_prices() -> None:
    table = PriceTable()
    usage = Usage(input_tokens=10_000, output_tokens=1_000)
    openai_cost = table.cost("openai", "gpt-4o-mini", usage)
    anthropic_cost = table.cost("anthropic", "claude-haiku-4-5", usage)
    assert openai_cost is not None and openai_cost > 0
    assert anthropic_cost is not None and anthropic_cost > 0
    # cached tokens are part of input_tokens and cost less than uncached ones
    cached = table.cost("openai", "gpt-4o-mini", Usage(10_000, 1_000, cached_input_tokens=5_000))
    assert cached is not None and 0 < cached < openai_cost
    written = Usage(10_000, 1_000, cache_write_tokens=5_000)
    write_cost = table.cost("anthropic", "claude-haiku-4-5", written)
    assert write_cost is not None and write_cost > anthropic_cost
    plain = table.max_cost("anthropic", "claude-haiku-4-5", 10_000, 1_000)
    worst = table.max_cost("anthropic", "claude-haiku-4-5", 10_000, 1_000, cache_writes=True)
    assert plain is not None and worst is not None and plain < write_cost <= worst
    assert table.cost("openai", "no-such-model-xyz", usage) is None
    assert table.cost("no-such-provider", "gpt-4o-mini", usage) is None
    assert table.max_cost("openai", "no-such-model-xyz", 10, 10) is None


@pytest.mark.parametrize(
    ("kind", "model"), [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5")]
)
async def test_max_cost_bounds_a_real_call(server: FakeLLMServer, kind: str, model: str) -> None:
    table = PriceTable()
    request = ModelRequest(model=model, messages=CONVERSATION, max_tokens=64)
    response = await provider_for(kind, server).complete(request)
    assert response.usage.output_tokens <= 64
    cost = table.cost(kind, model, response.usage)
    bound = table.max_cost(kind, model, response.usage.input_tokens, 64)
    assert cost is not None and bound is not None and 0 < cost <= bound
    assert table.max_cost("mock", "mock", 1_000_000, 1_000_000) == Decimal("3")


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_stopped_server_is_named_with_what_to_check(
    server: FakeLLMServer, kind: str
) -> None:
    provider = provider_for(kind, server)
    base = server.openai_base_url if kind == "openai" else server.anthropic_base_url
    server.stop()
    with pytest.raises(RetriableProviderError) as info:
        await provider.complete(ModelRequest(model="m", messages=CONVERSATION))
    assert base.rstrip("/") in str(info.value) and "is the server running" in str(info.value)


async def test_a_base_url_without_v1_says_so() -> None:
    """Like llama.cpp's server: only ``/v1/...`` exists, anything else is a bare 404."""

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/"):
            return httpx.Response(500)
        return httpx.Response(404, text="File Not Found")

    base = "http://127.0.0.1:8080"
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    sdk = openai.AsyncOpenAI(base_url=base, api_key="k", http_client=http)
    with pytest.raises(TerminalProviderError) as info:
        await OpenAICompatProvider(client=sdk).complete(
            ModelRequest(model="m", messages=CONVERSATION)
        )
    assert info.value.status_code == 404
    message = str(info.value)
    assert base in message and "wants it to end in /v1" in message, message
