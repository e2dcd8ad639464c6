"""Translation between OpenAI chat completions and the Anthropic Messages API, without a server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hookgate_proxy.providers.anthropic_translate import (
    DEFAULT_MAX_TOKENS,
    anthropic_tool_id,
    error_from_event,
    error_from_response,
    finish_reason,
    to_anthropic_messages,
    to_anthropic_request,
    to_anthropic_tool_choice,
    to_anthropic_tools,
    to_openai_response,
    to_openai_usage,
)
from hookgate_proxy.providers.base import ProviderError

USER = {"role": "user", "content": "Hi"}


def request(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-test", "messages": [USER], **fields}


def translate(**fields: Any) -> dict[str, Any]:
    body, _ = to_anthropic_request(request(**fields))
    return body


# Request fields


def test_request_minimal() -> None:
    assert translate() == {
        "model": "claude-test",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": DEFAULT_MAX_TOKENS,
    }


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, DEFAULT_MAX_TOKENS),
    ({"max_tokens": 50}, 50),
    ({"max_completion_tokens": 70}, 70),
    ({"max_tokens": 50, "max_completion_tokens": 70}, 70),
    ({"max_tokens": None}, DEFAULT_MAX_TOKENS),
])
def test_request_max_tokens(fields: dict[str, Any], expected: int) -> None:
    assert translate(**fields)["max_tokens"] == expected


def test_request_default_max_tokens_override() -> None:
    body, _ = to_anthropic_request(request(), default_max_tokens=123)
    assert body["max_tokens"] == 123


@pytest.mark.parametrize("value", [0, -1, "10", True, 1.5])
def test_request_max_tokens_invalid(value: Any) -> None:
    with pytest.raises(ProviderError) as caught:
        translate(max_tokens=value)
    assert caught.value.status_code == 400
    assert caught.value.param == "max_tokens"


@pytest.mark.parametrize(("fields", "expected"), [
    ({"temperature": 0.3}, {"temperature": 0.3}),
    ({"top_p": 0.9}, {"top_p": 0.9}),
    ({"top_k": 5}, {"top_k": 5}),
    ({"stop": "END"}, {"stop_sequences": ["END"]}),
    ({"stop": ["a", "b"]}, {"stop_sequences": ["a", "b"]}),
    ({"stop": []}, {}),
    ({"user": "user-42"}, {"metadata": {"user_id": "user-42"}}),
    ({"temperature": None}, {}),
])
def test_request_sampling_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = translate(**fields)
    extra = {key: value for key, value in body.items()
             if key not in ("model", "messages", "max_tokens")}
    assert extra == expected


def test_request_stream_flag() -> None:
    body, _ = to_anthropic_request(request(stream=True, stream_options={"include_usage": True}),
                                   stream=True)
    assert body["stream"] is True
    assert "stream_options" not in body


def test_request_reports_dropped_fields() -> None:
    body, ignored = to_anthropic_request(request(seed=7, logit_bias={"1": 2},
                                                 frequency_penalty=None, made_up=1))
    assert ignored == ["logit_bias", "made_up", "seed"]
    assert "seed" not in body
    assert "made_up" not in body


@pytest.mark.parametrize(("fields", "param"), [
    ({"n": 2}, "n"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"stop": 5}, "stop"),
    ({"user": 5}, "user"),
    ({"model": ""}, "model"),
    ({"messages": []}, "messages"),
])
def test_request_rejected(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(ProviderError) as caught:
        translate(**fields)
    assert caught.value.status_code == 400
    assert caught.value.param == param


def test_request_response_format_text() -> None:
    assert "response_format" not in translate(response_format={"type": "text"}, n=1)


# Messages


def turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return to_anthropic_messages(messages)[1]


def test_messages_system_and_developer() -> None:
    system, result = to_anthropic_messages([
        {"role": "system", "content": "Be brief."},
        USER,
        {"role": "developer", "content": [{"type": "text", "text": "Use English."}]},
    ])
    assert system == [{"type": "text", "text": "Be brief."},
                      {"type": "text", "text": "Use English."}]
    assert result == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


def test_messages_merge_same_role() -> None:
    result = turns([USER, {"role": "user", "content": "again"},
                    {"role": "assistant", "content": "one"},
                    {"role": "assistant", "content": "two"}])
    assert [turn["role"] for turn in result] == ["user", "assistant"]
    assert [block["text"] for block in result[0]["content"]] == ["Hi", "again"]
    assert [block["text"] for block in result[1]["content"]] == ["one", "two"]


def test_messages_system_between_turns_keeps_alternation() -> None:
    result = turns([USER, {"role": "system", "content": "note"}, {"role": "user", "content": "x"}])
    assert len(result) == 1
    assert len(result[0]["content"]) == 2


def test_messages_empty_content_dropped() -> None:
    result = turns([USER, {"role": "assistant", "content": ""}, {"role": "user", "content": "x"}])
    assert result == [{"role": "user", "content": [{"type": "text", "text": "Hi"},
                                                   {"type": "text", "text": "x"}]}]


def test_messages_first_assistant_rejected() -> None:
    with pytest.raises(ProviderError) as caught:
        turns([{"role": "assistant", "content": "Hello"}, USER])
    assert caught.value.status_code == 400


def test_messages_only_system_rejected() -> None:
    with pytest.raises(ProviderError) as caught:
        turns([{"role": "system", "content": "x"}])
    assert caught.value.param == "messages"


def test_messages_unknown_role_rejected() -> None:
    with pytest.raises(ProviderError) as caught:
        turns([USER, {"role": "function", "content": "x", "name": "f"}])
    assert caught.value.param == "messages[1].role"


def test_messages_final_assistant_whitespace_stripped() -> None:
    result = turns([USER, {"role": "assistant", "content": "The answer is "}])
    assert result[-1]["content"] == [{"type": "text", "text": "The answer is"}]


def test_messages_final_assistant_only_whitespace_dropped() -> None:
    result = turns([USER, {"role": "assistant", "content": "  "}])
    assert [turn["role"] for turn in result] == ["user"]


def test_messages_image_parts() -> None:
    result = turns([{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.jpg"}},
    ]}])
    assert result[0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.test/cat.jpg"}},
    ]


def test_messages_pdf_file_part() -> None:
    result = turns([{"role": "user", "content": [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}}]}])
    assert result[0]["content"] == [{"type": "document", "source": {
        "type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]


@pytest.mark.parametrize("part", [
    {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}},
    {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}},
    {"type": "file", "file": {"file_id": "file-123"}},
    {"type": "text"},
])
def test_messages_unsupported_part_rejected(part: dict[str, Any]) -> None:
    with pytest.raises(ProviderError) as caught:
        turns([{"role": "user", "content": [{"type": "text", "text": "a"}, part]}])
    assert caught.value.status_code == 400
    assert caught.value.param == "messages[0].content[1]"


# Tools


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def test_tools_definition() -> None:
    assert to_anthropic_tools([WEATHER]) == [{
        "name": "get_weather", "description": "Current weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]}}]


def test_tools_without_parameters() -> None:
    tools = to_anthropic_tools([{"type": "function", "function": {"name": "now"}}])
    assert tools == [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]


@pytest.mark.parametrize("tool", [
    {"type": "web_search"},
    {"type": "function", "function": {"description": "no name"}},
    "get_weather",
])
def test_tools_invalid_rejected(tool: Any) -> None:
    with pytest.raises(ProviderError) as caught:
        to_anthropic_tools([tool])
    assert caught.value.status_code == 400


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    (None, None, None),
    ("auto", None, None),
    ("auto", True, None),
    ("none", None, {"type": "none"}),
    ("none", False, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None,
     {"type": "tool", "name": "get_weather"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
])
def test_tool_choice(choice: Any, parallel: Any, expected: Any) -> None:
    assert to_anthropic_tool_choice(choice, parallel) == expected


@pytest.mark.parametrize("choice", ["sometimes", {"type": "function"}, {"type": "tool"}])
def test_tool_choice_invalid_rejected(choice: Any) -> None:
    with pytest.raises(ProviderError) as caught:
        to_anthropic_tool_choice(choice)
    assert caught.value.param == "tool_choice"


def test_request_tool_choice_without_tools_dropped() -> None:
    assert "tool_choice" not in translate(tool_choice="required")


def test_request_tools_and_choice() -> None:
    body = translate(tools=[WEATHER], tool_choice="required")
    assert body["tools"][0]["name"] == "get_weather"
    assert body["tool_choice"] == {"type": "any"}


def test_messages_tool_call_round_trip() -> None:
    result = turns([
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
        {"role": "tool", "tool_call_id": "call_2",
         "content": [{"type": "text", "text": "21 C"}]},
        {"role": "user", "content": "Thanks"},
    ])
    assert result[1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
    ]}
    assert result[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1",
         "content": [{"type": "text", "text": "18 C"}]},
        {"type": "tool_result", "tool_use_id": "call_2",
         "content": [{"type": "text", "text": "21 C"}]},
        {"type": "text", "text": "Thanks"},
    ]}
    assert len(result) == 3


def test_messages_tool_results_moved_before_text() -> None:
    result = turns([
        USER,
        {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "first"},
        {"role": "tool", "tool_call_id": "c1", "content": "result"},
    ])
    assert [block["type"] for block in result[2]["content"]] == ["tool_result", "text"]


def test_messages_assistant_text_and_tool_call() -> None:
    result = turns([USER, {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]}])
    assert result[1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {}},
    ]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_messages_tool_arguments_invalid(arguments: str) -> None:
    with pytest.raises(ProviderError) as caught:
        turns([USER, {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}]}])
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


def test_messages_tool_without_call_id_rejected() -> None:
    with pytest.raises(ProviderError) as caught:
        turns([USER, {"role": "tool", "content": "x"}])
    assert caught.value.param == "messages[1].tool_call_id"


@pytest.mark.parametrize(("call_id", "expected"), [
    ("toolu_01AbC", "toolu_01AbC"),
    ("call-9_x", "call-9_x"),
    ("call.7:x", "call_7_x"),
])
def test_tool_id_sanitized(call_id: str, expected: str) -> None:
    assert anthropic_tool_id(call_id) == expected


def test_messages_tool_id_sanitized_in_pair() -> None:
    result = turns([
        USER,
        {"role": "assistant", "tool_calls": [
            {"id": "fn.1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "fn.1", "content": "ok"},
    ])
    assert result[1]["content"][0]["id"] == "fn_1"
    assert result[2]["content"][0]["tool_use_id"] == "fn_1"


# Responses


@pytest.mark.parametrize(("stop_reason", "expected"), [
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("max_tokens", "length"),
    ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
    ("model_context_window_exceeded", "length"),
    ("pause_turn", "stop"),
    ("something_new", "stop"),
    (None, None),
])
def test_finish_reason(stop_reason: str | None, expected: str | None) -> None:
    assert finish_reason(stop_reason) == expected


def test_usage_plain() -> None:
    assert to_openai_usage({"input_tokens": 10, "output_tokens": 4}) == {
        "prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
        "prompt_tokens_details": {"cached_tokens": 0}}


def test_usage_with_cache() -> None:
    usage = to_openai_usage({"input_tokens": 10, "output_tokens": 4,
                             "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20})
    assert usage["prompt_tokens"] == 130
    assert usage["total_tokens"] == 134
    assert usage["prompt_tokens_details"] == {"cached_tokens": 100}


MESSAGE = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-test",
    "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 3},
}


def test_response_text() -> None:
    response = to_openai_response(MESSAGE, created=1700000000)
    assert response == {
        "id": "msg_01", "object": "chat.completion", "created": 1700000000,
        "model": "claude-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                  "prompt_tokens_details": {"cached_tokens": 0}},
    }


def test_response_tool_use() -> None:
    message = {**MESSAGE, "stop_reason": "tool_use", "content": [
        {"type": "thinking", "thinking": "hidden", "signature": "sig"},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
         "input": {"city": "Zürich", "days": 2}}]}
    choice = to_openai_response(message, created=0)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "toolu_1"
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Zürich", "days": 2}


def test_response_empty_content() -> None:
    message = {**MESSAGE, "content": [], "stop_reason": "max_tokens"}
    choice = to_openai_response(message, created=0)["choices"][0]
    assert choice["message"]["content"] == ""
    assert choice["finish_reason"] == "length"


def test_response_without_content_list() -> None:
    with pytest.raises(ProviderError) as caught:
        to_openai_response({"id": "msg_1"}, created=0)
    assert caught.value.status_code == 502


# Errors


def anthropic_error(error_type: str, message: str) -> bytes:
    return json.dumps({"type": "error",
                       "error": {"type": error_type, "message": message}}).encode()


@pytest.mark.parametrize(("status", "error_type", "client_status"), [
    (400, "invalid_request_error", 400),
    (401, "authentication_error", 401),
    (403, "permission_error", 403),
    (404, "not_found_error", 404),
    (413, "request_too_large", 413),
    (429, "rate_limit_error", 429),
    (500, "api_error", 500),
    (529, "overloaded_error", 503),
])
def test_error_from_response(status: int, error_type: str, client_status: int) -> None:
    error = error_from_response(status, anthropic_error(error_type, "went wrong"))
    assert error.status_code == client_status
    assert error.error_type == error_type
    assert error.code == error_type
    assert error.message == "went wrong"
    assert error.provider == "anthropic"


def test_error_from_response_request_id() -> None:
    error = error_from_response(429, anthropic_error("rate_limit_error", "slow down"),
                                request_id="req_123")
    assert error.message == "slow down (Anthropic request-id req_123)"


def test_error_from_non_json_response() -> None:
    error = error_from_response(502, b"<html>Bad gateway</html>")
    assert error.status_code == 502
    assert "non-JSON" in error.message
    assert "Bad gateway" in error.message


@pytest.mark.parametrize(("error_type", "status"), [
    ("overloaded_error", 503),
    ("rate_limit_error", 429),
    ("api_error", 500),
    ("unknown_error", 502),
])
def test_error_from_stream_event(error_type: str, status: int) -> None:
    error = error_from_event(error_type, "stopped")
    assert error.status_code == status
    assert error.error_type == error_type
