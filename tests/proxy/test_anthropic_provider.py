"""AnthropicProvider against the loopback Anthropic server."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from hookgate_proxy.providers.anthropic import AnthropicProvider, messages_url
from hookgate_proxy.providers.base import (
    Deployment,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)


def load_server_module() -> ModuleType:
    # Test folders are not packages and pytest runs with --import-mode=importlib, so the
    # helper module next to this file is loaded by path.
    name = "hookgate_tests_anthropic_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("anthropic_server.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fake = load_server_module()

KEY = "sk-ant-loopback-key"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with fake.AnthropicServer(api_key=KEY) as running:
        yield running


@pytest.fixture
def upstream(server: Any) -> Any:
    server.reset()
    return server


@pytest.fixture
async def provider() -> AsyncIterator[AnthropicProvider]:
    async with aiohttp.ClientSession() as session:
        yield AnthropicProvider(session)


def deployment(server: Any, **fields: Any) -> Deployment:
    values: dict[str, Any] = {"model_name": "claude", "provider": "anthropic",
                              "upstream_model": "claude-test", "api_base": server.base_url,
                              "api_key": KEY, "timeout": 5.0}
    values.update(fields)
    return Deployment(**values)


def body(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "claude-test",
            "messages": list(messages) or [{"role": "user", "content": "Hello"}], **fields}


async def collect(provider: AnthropicProvider, target: Deployment,
                  request: dict[str, Any]) -> list[dict[str, Any]]:
    return [chunk async for chunk in provider.stream_chat(target, request)]


# Requests on the wire


async def test_chat_sends_headers(provider: AnthropicProvider, upstream: Any) -> None:
    await provider.chat(deployment(upstream), body())
    headers = upstream.requests[0].headers
    assert headers["x-api-key"] == KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers
    assert upstream.requests[0].path == "/v1/messages"


async def test_chat_sends_translated_body(provider: AnthropicProvider, upstream: Any) -> None:
    request = body({"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "Hello"},
                   max_completion_tokens=99, temperature=0.2, stop=["END"], user="u-1", seed=3)
    await provider.chat(deployment(upstream), request)
    sent = upstream.requests[0].body
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["max_tokens"] == 99
    assert sent["temperature"] == 0.2
    assert sent["stop_sequences"] == ["END"]
    assert sent["metadata"] == {"user_id": "u-1"}
    assert "seed" not in sent
    assert "stream" not in sent


async def test_chat_default_max_tokens_from_deployment(provider: AnthropicProvider,
                                                       upstream: Any) -> None:
    await provider.chat(deployment(upstream, extra={"max_tokens": 321}), body())
    assert upstream.requests[0].body["max_tokens"] == 321


async def test_chat_version_and_extra_headers(provider: AnthropicProvider,
                                             upstream: Any) -> None:
    extra = {"api_version": "2023-01-01",
             "extra_headers": {"Anthropic-Beta": "tools-2024", "X-Api-Key": "sk-ant-other"}}
    await provider.chat(deployment(upstream, extra=extra), body())
    headers = upstream.requests[0].headers
    assert headers["anthropic-version"] == "2023-01-01"
    assert headers["anthropic-beta"] == "tools-2024"
    assert headers["x-api-key"] == KEY


async def test_chat_api_key_from_environment(provider: AnthropicProvider, upstream: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    await provider.chat(deployment(upstream, api_key=None), body())
    assert upstream.requests[0].headers["x-api-key"] == KEY


async def test_chat_without_api_key(provider: AnthropicProvider, upstream: Any,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ProviderError) as caught:
        await provider.chat(deployment(upstream, api_key=None), body())
    assert caught.value.status_code == 500
    assert "ANTHROPIC_API_KEY" in caught.value.message
    assert upstream.requests == []


@pytest.mark.parametrize(("api_base", "expected"), [
    (None, "https://api.anthropic.com/v1/messages"),
    ("http://127.0.0.1:9", "http://127.0.0.1:9/v1/messages"),
    ("http://127.0.0.1:9/", "http://127.0.0.1:9/v1/messages"),
    ("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1/messages"),
    ("http://127.0.0.1:9/v1/messages", "http://127.0.0.1:9/v1/messages"),
    ("http://127.0.0.1:9/anthropic", "http://127.0.0.1:9/anthropic/v1/messages"),
])
def test_messages_url(api_base: str | None, expected: str) -> None:
    assert messages_url(api_base) == expected


# Answers


async def test_chat_text(provider: AnthropicProvider, upstream: Any) -> None:
    upstream.enqueue(fake.text_reply("Bonjour", input_tokens=8, output_tokens=2))
    response = await provider.chat(deployment(upstream), body())
    assert response["object"] == "chat.completion"
    assert response["model"] == "claude-test"
    assert response["choices"][0]["message"] == {"role": "assistant", "content": "Bonjour"}
    assert response["choices"][0]["finish_reason"] == "stop"
    assert response["usage"]["prompt_tokens"] == 8
    assert response["usage"]["completion_tokens"] == 2
    assert response["usage"]["total_tokens"] == 10


async def test_chat_tool_round_trip(provider: AnthropicProvider, upstream: Any) -> None:
    upstream.enqueue(fake.tool_reply("get_weather", {"city": "Paris"}, tool_id="toolu_7"))
    first = await provider.chat(deployment(upstream),
                                body({"role": "user", "content": "Weather in Paris?"},
                                     tools=[WEATHER_TOOL], tool_choice="auto"))
    message = first["choices"][0]["message"]
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"][0]["id"] == "toolu_7"
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}

    upstream.enqueue(fake.text_reply("It is 18 C in Paris."))
    second = await provider.chat(deployment(upstream), body(
        {"role": "user", "content": "Weather in Paris?"},
        message,
        {"role": "tool", "tool_call_id": "toolu_7", "content": "18 C"},
        tools=[WEATHER_TOOL]))
    assert second["choices"][0]["message"]["content"] == "It is 18 C in Paris."
    sent = upstream.requests[1].body["messages"]
    assert [turn["role"] for turn in sent] == ["user", "assistant", "user"]
    assert sent[2]["content"][0]["tool_use_id"] == "toolu_7"


async def test_chat_tool_choice_named(provider: AnthropicProvider, upstream: Any) -> None:
    await provider.chat(deployment(upstream), body(
        tools=[WEATHER_TOOL], parallel_tool_calls=False,
        tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    assert upstream.requests[0].body["tool_choice"] == {
        "type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}


async def test_chat_merged_turns_accepted(provider: AnthropicProvider, upstream: Any) -> None:
    response = await provider.chat(deployment(upstream), body(
        {"role": "user", "content": "one"}, {"role": "user", "content": "two"},
        {"role": "assistant", "content": "three"}, {"role": "system", "content": "four"},
        {"role": "assistant", "content": "five"}, {"role": "user", "content": "six"}))
    assert response["choices"][0]["message"]["content"] == "echo: six"
    assert [turn["role"] for turn in upstream.requests[0].body["messages"]] == [
        "user", "assistant", "user"]


# Streaming


def joined(chunks: list[dict[str, Any]]) -> tuple[str, dict[int, dict[str, str]]]:
    text = ""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            text += choice["delta"].get("content") or ""
            for call in choice["delta"].get("tool_calls", []):
                entry = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.get("id", "")
                entry["name"] += call.get("function", {}).get("name", "")
                entry["arguments"] += call["function"].get("arguments", "")
    return text, calls


@pytest.mark.parametrize("delivery", [
    {},
    {"piece_size": 1},
    {"piece_size": 5, "line_ending": "\r\n"},
    {"piece_size": 3, "line_ending": "\r"},
    {"multiline_data": True, "piece_size": 11},
])
async def test_stream_text(provider: AnthropicProvider, upstream: Any,
                           delivery: dict[str, Any]) -> None:
    upstream.enqueue(fake.text_reply("Streaming works fine, caf\u00e9 \u2603.", **delivery))
    chunks = await collect(provider, deployment(upstream), body(stream=True))
    text, calls = joined(chunks)
    assert text == "Streaming works fine, caf\u00e9 \u2603."
    assert calls == {}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert upstream.requests[0].body["stream"] is True
    assert upstream.requests[0].headers["accept"] == "text/event-stream"


async def test_stream_tool_call(provider: AnthropicProvider, upstream: Any) -> None:
    upstream.enqueue(fake.tool_reply("get_weather", {"city": "Paris", "unit": "C"},
                                     text="Let me check.", tool_id="toolu_9", piece_size=7))
    chunks = await collect(provider, deployment(upstream),
                           body(tools=[WEATHER_TOOL], stream=True))
    text, calls = joined(chunks)
    assert text == "Let me check."
    assert calls[0]["id"] == "toolu_9"
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "unit": "C"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_stream_include_usage(provider: AnthropicProvider, upstream: Any) -> None:
    upstream.enqueue(fake.text_reply("ok", input_tokens=20, output_tokens=4,
                                     cache_read_input_tokens=6))
    chunks = await collect(provider, deployment(upstream),
                           body(stream=True, stream_options={"include_usage": True}))
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 26
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 6}
    assert "stream_options" not in upstream.requests[0].body


async def test_stream_without_usage(provider: AnthropicProvider, upstream: Any) -> None:
    chunks = await collect(provider, deployment(upstream), body(stream=True))
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_stream_error_event(provider: AnthropicProvider, upstream: Any) -> None:
    upstream.enqueue(fake.text_reply("partial answer that stops", error_after=4))
    received = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in provider.stream_chat(deployment(upstream), body(stream=True)):
            received.append(chunk)
    assert caught.value.status_code == 503
    assert caught.value.error_type == "overloaded_error"
    # Events before the error: message_start, ping, content_block_start and one text delta.
    assert [chunk["choices"][0]["delta"] for chunk in received] == [
        {"role": "assistant", "content": ""}, {"content": "part"}]


async def test_stream_closed_early(provider: AnthropicProvider, upstream: Any) -> None:
    upstream.enqueue(fake.text_reply("a long answer " * 50, piece_size=64))
    chunks = provider.stream_chat(deployment(upstream), body(stream=True))
    first = await chunks.__anext__()
    await chunks.aclose()
    assert first["choices"][0]["delta"]["role"] == "assistant"

    response = await provider.chat(deployment(upstream), body())
    assert response["choices"][0]["message"]["content"] == "echo: Hello"


async def test_stream_truncated(provider: AnthropicProvider, upstream: Any) -> None:
    upstream.enqueue(fake.text_reply("cut short", truncate_after=5))
    with pytest.raises(ProviderUnavailable) as caught:
        await collect(provider, deployment(upstream), body(stream=True))
    assert "message_stop" in caught.value.message


async def test_stream_stall_times_out(provider: AnthropicProvider, upstream: Any) -> None:
    upstream.enqueue(fake.text_reply("slow", stall_after=3, stall=5))
    with pytest.raises(ProviderTimeout):
        await collect(provider, deployment(upstream, timeout=0.3), body(stream=True))


async def test_stream_http_error(provider: AnthropicProvider, upstream: Any) -> None:
    upstream.enqueue(fake.error_reply(429, "rate_limit_error", "Number of requests exceeded"))
    with pytest.raises(ProviderError) as caught:
        await collect(provider, deployment(upstream), body(stream=True))
    assert caught.value.status_code == 429
    assert caught.value.message.startswith("Number of requests exceeded")


# Errors


@pytest.mark.parametrize(("status", "error_type", "client_status"), [
    (400, "invalid_request_error", 400),
    (403, "permission_error", 403),
    (404, "not_found_error", 404),
    (429, "rate_limit_error", 429),
    (500, "api_error", 500),
    (529, "overloaded_error", 503),
])
async def test_chat_upstream_error(provider: AnthropicProvider, upstream: Any, status: int,
                                   error_type: str, client_status: int) -> None:
    upstream.enqueue(fake.error_reply(status, error_type, "upstream says no"))
    with pytest.raises(ProviderError) as caught:
        await provider.chat(deployment(upstream), body())
    assert caught.value.status_code == client_status
    assert caught.value.error_type == error_type
    assert caught.value.message == "upstream says no (Anthropic request-id req_error)"


async def test_chat_wrong_api_key(provider: AnthropicProvider, upstream: Any) -> None:
    with pytest.raises(ProviderError) as caught:
        await provider.chat(deployment(upstream, api_key="sk-ant-wrong"), body())
    assert caught.value.status_code == 401
    assert caught.value.error_type == "authentication_error"
    assert "sk-ant-wrong" not in caught.value.message


async def test_chat_non_json_error(provider: AnthropicProvider, upstream: Any) -> None:
    upstream.enqueue(fake.Reply(status=502, raw_body=b"<html>bad gateway</html>"))
    with pytest.raises(ProviderError) as caught:
        await provider.chat(deployment(upstream), body())
    assert caught.value.status_code == 502
    assert "non-JSON" in caught.value.message


async def test_chat_timeout(provider: AnthropicProvider, upstream: Any) -> None:
    upstream.enqueue(fake.text_reply("late", delay=5))
    with pytest.raises(ProviderTimeout) as caught:
        await provider.chat(deployment(upstream, timeout=0.3), body())
    assert caught.value.status_code == 504


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_chat_connection_refused(provider: AnthropicProvider, upstream: Any) -> None:
    target = deployment(upstream, api_base=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.chat(target, body())
    assert caught.value.status_code == 502


async def test_stream_connection_refused(provider: AnthropicProvider, upstream: Any) -> None:
    target = deployment(upstream, api_base=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ProviderUnavailable):
        await collect(provider, target, body(stream=True))


async def test_chat_invalid_request_not_sent(provider: AnthropicProvider, upstream: Any) -> None:
    with pytest.raises(ProviderError) as caught:
        await provider.chat(deployment(upstream), body(n=3))
    assert caught.value.status_code == 400
    assert upstream.requests == []


async def test_embed_unsupported(provider: AnthropicProvider, upstream: Any) -> None:
    with pytest.raises(ProviderError) as caught:
        await provider.embed(deployment(upstream), {"model": "claude-test", "input": "x"})
    assert caught.value.status_code == 400


# The loopback server itself: it must reject what the real API rejects, or the tests above
# would pass against a server that accepts anything.


async def raw_post(server: Any, payload: Any, headers: dict[str, str] | None = None,
                   ) -> tuple[int, dict[str, Any]]:
    sent = {"x-api-key": KEY, "anthropic-version": "2023-06-01",
            "content-type": "application/json"}
    sent.update(headers or {})
    async with aiohttp.ClientSession() as session, session.post(
            f"{server.base_url}/v1/messages", data=json.dumps(payload),
            headers={key: value for key, value in sent.items() if value}) as response:
        return response.status, await response.json()


VALID = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
TOOL_TURNS = [
    {"role": "user", "content": "q"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                       "input": {}}]},
]


@pytest.mark.parametrize(("headers", "payload", "status", "fragment"), [
    ({}, VALID, 200, None),
    ({"x-api-key": ""}, VALID, 401, "x-api-key header is required"),
    ({"x-api-key": "other"}, VALID, 401, "invalid x-api-key"),
    ({"anthropic-version": ""}, VALID, 400, "anthropic-version"),
    ({}, {**VALID, "max_tokens": None}, 400, "max_tokens"),
    ({}, {"model": "m", "messages": VALID["messages"]}, 400, "max_tokens"),
    ({}, {**VALID, "n": 1}, 400, "n: Extra inputs"),
    ({}, {**VALID, "messages": [{"role": "assistant", "content": "x"}]}, 400, "alternate"),
    ({}, {**VALID, "messages": [{"role": "user", "content": "a"},
                                {"role": "user", "content": "b"}]}, 400, "alternate"),
    ({}, {**VALID, "messages": [{"role": "system", "content": "a"}]}, 400, "role"),
    ({}, {**VALID, "messages": [{"role": "user", "content": ""}]}, 400, "non-empty"),
    ({}, {**VALID, "messages": [*TOOL_TURNS, {"role": "user", "content": "no result"}]},
     400, "without tool_result"),
    ({}, {**VALID, "messages": [*TOOL_TURNS, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t2"}]}]}, 400, "unexpected tool_use_id"),
    ({}, {**VALID, "messages": [*TOOL_TURNS, {"role": "user", "content": [
        {"type": "text", "text": "x"}, {"type": "tool_result", "tool_use_id": "t1"}]}]},
     400, "before other content"),
    ({}, {**VALID, "messages": [*TOOL_TURNS, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1"}]}]}, 200, None),
    ({}, {**VALID, "messages": [{"role": "user", "content": "a"},
                                {"role": "assistant", "content": "b "}]}, 400, "whitespace"),
    ({}, {**VALID, "tool_choice": {"type": "any"}}, 400, "tool_choice"),
    ({}, {**VALID, "tools": [{"name": "f", "parameters": {}}]}, 400, "tools.0"),
    ({}, {**VALID, "temperature": 1.5}, 400, "temperature"),
])
async def test_server_checks(upstream: Any, headers: dict[str, str], payload: dict[str, Any],
                             status: int, fragment: str | None) -> None:
    actual_status, answer = await raw_post(upstream, payload, headers)
    assert actual_status == status, answer
    if fragment is not None:
        assert answer["type"] == "error"
        assert fragment in answer["error"]["message"]
