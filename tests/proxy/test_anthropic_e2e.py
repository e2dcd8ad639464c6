"""End to end: the OpenAI SDK calls `hookgate serve`, which calls the loopback Anthropic API."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import openai
import pytest

from hookgate_proxy.testing import read_records, running_proxy, write_plugin_distribution


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

UPSTREAM_KEY = "sk-ant-e2e-upstream"
MASTER_KEY = "sk-hookgate-e2e-master"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


class Stack:
    """The running upstream, proxy and client of this module's tests."""

    def __init__(self, upstream: Any, proxy: Any, records: Path) -> None:
        self.upstream = upstream
        self.proxy = proxy
        self.records = records
        self.client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url, max_retries=0,
                                    timeout=20)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("anthropic-e2e")
    write_plugin_distribution(directory, {"recorder": "hookgate_proxy.testing:FileRecorder"})
    records = directory / "records.jsonl"
    python_path = os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))

    with fake.AnthropicServer(api_key=UPSTREAM_KEY) as upstream:
        config = {
            "model_list": [{"model_name": "claude", "litellm_params": {
                "model": "anthropic/claude-test", "api_base": upstream.base_url,
                "api_key": "os.environ/E2E_ANTHROPIC_KEY", "timeout": 10}}],
            "litellm_settings": {"callbacks": ["recorder"]},
            "callback_settings": {"recorder": {"path": str(records)}},
            "general_settings": {"master_key": MASTER_KEY},
        }
        environment = {"E2E_ANTHROPIC_KEY": UPSTREAM_KEY, "PYTHONPATH": python_path}
        with running_proxy(config, env=environment) as proxy:
            yield Stack(upstream, proxy, records)


@pytest.fixture
def running(stack: Stack) -> Stack:
    stack.upstream.reset()
    return stack


def test_stream_tool_call_then_answer(running: Stack) -> None:
    running.upstream.enqueue(
        fake.tool_reply("get_weather", {"city": "Paris"}, text="Checking.", tool_id="toolu_e2e",
                        piece_size=9, input_tokens=40, output_tokens=12),
        fake.text_reply("It is 18 C in Paris.", input_tokens=60, output_tokens=9))

    stream = running.client.chat.completions.create(
        model="claude", messages=[QUESTION], tools=[WEATHER_TOOL], stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-litellm-disable-callbacks": "nosuch"})
    chunks = list(stream)

    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                entry["name"] += (call.function and call.function.name) or ""
                entry["arguments"] += (call.function and call.function.arguments) or ""
    finish_reasons = [choice.finish_reason for chunk in chunks for choice in chunk.choices
                      if choice.finish_reason]
    assert text == "Checking."
    assert list(calls) == [0]
    assert calls[0]["id"] == "toolu_e2e"
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert finish_reasons == ["tool_calls"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 40
    assert chunks[-1].usage.completion_tokens == 12

    answer = running.client.chat.completions.create(model="claude", tools=[WEATHER_TOOL],
                                                    messages=[
        QUESTION,
        {"role": "assistant", "content": text, "tool_calls": [
            {"id": calls[0]["id"], "type": "function",
             "function": {"name": calls[0]["name"], "arguments": calls[0]["arguments"]}}]},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18 C"},
    ])
    assert answer.choices[0].message.content == "It is 18 C in Paris."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.total_tokens == 69

    first, second = running.upstream.requests
    assert first.body["stream"] is True
    assert first.body["tools"][0]["input_schema"]["required"] == ["city"]
    assert [turn["role"] for turn in second.body["messages"]] == ["user", "assistant", "user"]
    assert second.body["messages"][2]["content"][0]["tool_use_id"] == "toolu_e2e"


def test_upstream_sees_only_its_key(running: Stack) -> None:
    running.client.chat.completions.create(
        model="claude", messages=[QUESTION],
        extra_headers={"x-litellm-disable-callbacks": "recorder",
                       "x-litellm-api-key": MASTER_KEY})
    headers = running.upstream.requests[0].headers
    assert headers["x-api-key"] == UPSTREAM_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    assert "x-litellm-api-key" not in headers
    assert "x-litellm-disable-callbacks" not in headers
    assert MASTER_KEY not in json.dumps(running.upstream.requests[0].body)


@pytest.mark.parametrize(("status", "error_type", "client_status"), [
    (529, "overloaded_error", 503),
    (429, "rate_limit_error", 429),
    (400, "invalid_request_error", 400),
])
def test_upstream_error_status(running: Stack, status: int, error_type: str,
                               client_status: int) -> None:
    running.upstream.enqueue(fake.error_reply(status, error_type, "upstream failure"))
    with pytest.raises(openai.APIStatusError) as caught:
        running.client.chat.completions.create(model="claude", messages=[QUESTION])
    assert caught.value.status_code == client_status
    assert "upstream failure" in caught.value.message


def test_stream_error_mid_stream(running: Stack) -> None:
    running.upstream.enqueue(fake.text_reply("this stream breaks halfway", error_after=5))
    received = []
    with pytest.raises(openai.APIError):
        for chunk in running.client.chat.completions.create(
                model="claude", messages=[QUESTION], stream=True):
            received.append(chunk)
    assert len(received) >= 1


def test_zz_one_event_per_request(stack: Stack) -> None:
    # Runs last in this module: stopping the proxy flushes the logger, so every event of the
    # tests above is in the file.
    assert stack.proxy.stop() == 0
    successes = read_records(stack.records, "log_success")
    failures = read_records(stack.records, "log_failure")
    # Three requests succeeded, but one of them disabled the recorder. Four requests failed:
    # three with an upstream error status and one with a broken stream.
    assert len(successes) == 2
    assert len(failures) == 4
    assert {record["event"]["provider"] for record in successes + failures} == {"anthropic"}
    assert sorted(record["event"]["error"]["status_code"] for record in failures) == [
        400, 429, 503, 503]
    streamed = [record["event"] for record in successes if record["event"]["stream"]]
    assert len(streamed) == 1
    assert streamed[0]["usage"]["prompt_tokens"] == 40
    assert streamed[0]["usage"]["completion_tokens"] == 12
