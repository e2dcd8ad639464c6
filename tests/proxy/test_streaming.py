"""Streaming chat completions: pass-through, usage, errors mid-stream and disconnects."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from hookgate_proxy.streaming import StreamAssembler
from hookgate_proxy.testing import FakeOpenAIServer, RunningProxy, running_proxy

LOGGERS = ("langfuse", "datadog", "recorder")
MESSAGES = [{"role": "user", "content": "stream please"}]


@pytest.fixture(scope="module")
def recorders(make_recorders: Any) -> Any:
    return make_recorders(("langfuse", "datadog"), entry_point_names=("recorder",))


@pytest.fixture(scope="module")
def proxy(upstream: FakeOpenAIServer, recorders: Any) -> Iterator[RunningProxy]:
    config = {
        "model_list": [
            {"model_name": "gpt-test", "litellm_params": {
                "model": "openai/fake-model", "api_base": upstream.base_url, "timeout": 5}},
            {"model_name": "mock-broken", "litellm_params": {"model": "mock/stream-error"}},
        ],
        "litellm_settings": {"callbacks": list(LOGGERS)},
        **recorders.config(),
    }
    with running_proxy(config, env=recorders.env()) as server:
        yield server


@pytest.fixture(scope="module")
def client(proxy: RunningProxy) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-none", base_url=proxy.base_url, max_retries=0)


def events_for(recorders: Any, call_id: str) -> dict[str, list[dict[str, Any]]]:
    """Wait for every logger's event for `call_id`; return each logger's records."""
    for name in LOGGERS:
        recorders.wait(name, call_id)
    time.sleep(0.1)  # room for a wrong second event to show
    return {name: recorders.events(name, call_id) for name in LOGGERS}


def stream(client: openai.OpenAI, **options: Any) -> tuple[str, list[Any]]:
    """Stream one completion; return the call id and the parsed chunks."""
    with client.chat.completions.with_streaming_response.create(
            model=options.pop("model", "gpt-test"), messages=MESSAGES, stream=True,
            **options) as response:
        return response.headers["x-hookgate-call-id"], list(response.parse())


def test_stream_without_usage(client: openai.OpenAI, recorders: Any,
                              fresh_upstream: FakeOpenAIServer) -> None:
    call_id, chunks = stream(client)
    records = events_for(recorders, call_id)
    event = records["recorder"][0]["event"]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)

    assert text == fresh_upstream.reply
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    for name in LOGGERS:
        assert [record["hook"] for record in records[name]] == ["log_success"], name
    assert event["stream"] is True
    assert event["response"]["choices"][0]["message"]["content"] == fresh_upstream.reply
    assert event["usage"]["completion_tokens"] > 0
    assert event["first_token_time"] is not None
    assert fresh_upstream.requests[-1].body["stream_options"] == {"include_usage": True}


def test_stream_with_usage(client: openai.OpenAI, recorders: Any,
                           fresh_upstream: FakeOpenAIServer) -> None:
    call_id, chunks = stream(client, stream_options={"include_usage": True})
    records = events_for(recorders, call_id)
    event = records["recorder"][0]["event"]
    usage_chunks = [chunk for chunk in chunks if chunk.usage is not None]

    assert len(usage_chunks) == 1
    assert usage_chunks[0].choices == []
    for name in LOGGERS:
        assert [record["hook"] for record in records[name]] == ["log_success"], name
    assert event["usage"] == usage_chunks[0].usage.model_dump(exclude_none=True)
    assert event["response"]["choices"][0]["message"]["content"] == fresh_upstream.reply
    assert event["response"]["choices"][0]["finish_reason"] == "stop"


def test_stream_not_buffered(proxy: RunningProxy, fresh_upstream: FakeOpenAIServer) -> None:
    fresh_upstream.reply = "one two three four five six"
    fresh_upstream.chunk_delay = 0.3
    started = time.monotonic()
    arrivals = []

    with httpx.stream("POST", proxy.base_url + "/chat/completions", timeout=30,
                      json={"model": "gpt-test", "messages": MESSAGES, "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - started)

    # The upstream needs about 2 s in all; the first chunk must not wait for the end.
    assert arrivals[-1] > 1.5
    assert arrivals[0] < arrivals[-1] - 1.0


def test_upstream_error_mid_stream(client: openai.OpenAI, recorders: Any,
                                   fresh_upstream: FakeOpenAIServer) -> None:
    fresh_upstream.fail_after_chunks = 3
    received = []

    with client.chat.completions.with_streaming_response.create(
            model="gpt-test", messages=MESSAGES, stream=True) as response:
        call_id = response.headers["x-hookgate-call-id"]
        with pytest.raises(openai.APIError, match="broke the stream"):
            for chunk in response.parse():
                received.append(chunk)
    records = events_for(recorders, call_id)
    event = records["recorder"][0]["event"]

    assert len(received) == 3
    for name in LOGGERS:
        assert [record["hook"] for record in records[name]] == ["log_failure"], name
    assert event["error"]["cancelled"] is False
    assert "broke the stream" in event["error"]["message"]
    assert event["response"]["choices"][0]["message"]["content"] == "Hello from"


def test_mock_error_mid_stream(client: openai.OpenAI, recorders: Any) -> None:
    with client.chat.completions.with_streaming_response.create(
            model="mock-broken", messages=MESSAGES, stream=True) as response:
        call_id = response.headers["x-hookgate-call-id"]
        with pytest.raises(openai.APIError):
            list(response.parse())
    records = events_for(recorders, call_id)

    for name in LOGGERS:
        assert [record["hook"] for record in records[name]] == ["log_failure"], name


def test_upstream_error_before_first_chunk(client: openai.OpenAI, recorders: Any,
                                           fresh_upstream: FakeOpenAIServer) -> None:
    fresh_upstream.fail_status = 503

    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    call_id = raised.value.response.headers["x-hookgate-call-id"]
    records = events_for(recorders, call_id)

    assert raised.value.status_code == 503
    for name in LOGGERS:
        assert [record["hook"] for record in records[name]] == ["log_failure"], name


def test_client_disconnect(proxy: RunningProxy, recorders: Any,
                           fresh_upstream: FakeOpenAIServer) -> None:
    fresh_upstream.reply = " ".join(f"word{index}" for index in range(30))
    fresh_upstream.chunk_delay = 0.1
    log_before = len(proxy.logs())
    chunks = 0

    with httpx.stream("POST", proxy.base_url + "/chat/completions", timeout=30,
                      json={"model": "gpt-test", "messages": MESSAGES, "stream": True}) as response:
        call_id = response.headers["x-hookgate-call-id"]
        for line in response.iter_lines():
            if line.startswith("data: "):
                chunks += 1
            if chunks == 3:
                break
    records = events_for(recorders, call_id)
    event = records["recorder"][0]["event"]
    new_log = proxy.logs()[log_before:]

    assert chunks == 3
    for name in LOGGERS:
        assert [record["hook"] for record in records[name]] == ["log_failure"], name
    assert event["error"]["cancelled"] is True
    assert event["error"]["type"] == "ClientDisconnected"
    assert "Traceback" not in new_log
    assert " ERROR " not in new_log
    assert len([line for line in new_log.splitlines() if call_id in line]) <= 1


def test_assembler_tool_calls() -> None:
    assembler = StreamAssembler()
    base = {"id": "chatcmpl-1", "created": 1, "model": "m"}
    deltas = [
        {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]},
    ]
    for delta in deltas:
        assembler.add({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    assembler.add({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})

    choice = assembler.completion()["choices"][0]

    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [{
        "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]
