"""Server-sent events parsing and Anthropic stream translation, without a server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hookgate_proxy.providers.anthropic_stream import SSEEvent, SSEParser, StreamTranslator
from hookgate_proxy.providers.base import ProviderError


def parse(*pieces: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    events.extend(parser.close())
    return events


# SSE parsing


@pytest.mark.parametrize(("stream", "expected"), [
    (b"event: ping\ndata: {}\n\n", [SSEEvent("ping", "{}")]),
    (b"event: ping\r\ndata: {}\r\n\r\n", [SSEEvent("ping", "{}")]),
    (b"event: ping\rdata: {}\r\r", [SSEEvent("ping", "{}")]),
    (b"data: a\ndata: b\n\n", [SSEEvent("message", "a\nb")]),
    (b"data:no-space\n\n", [SSEEvent("message", "no-space")]),
    (b"data:  two spaces\n\n", [SSEEvent("message", " two spaces")]),
    (b": comment\ndata: x\n\n", [SSEEvent("message", "x")]),
    (b"id: 1\nretry: 10\nunknown: y\ndata: x\n\n", [SSEEvent("message", "x")]),
    (b"event: only-a-name\n\n", []),
    (b"data: unterminated\n", []),
    (b"\xef\xbb\xbfdata: bom\n\n", [SSEEvent("message", "bom")]),
    (b"data: a\n\ndata: b\n\n", [SSEEvent("message", "a"), SSEEvent("message", "b")]),
    (b"data\n\n", [SSEEvent("message", "")]),
])
def test_sse_parse(stream: bytes, expected: list[SSEEvent]) -> None:
    assert parse(stream) == expected


def test_sse_event_name_resets() -> None:
    assert parse(b"event: a\ndata: 1\n\ndata: 2\n\n") == [SSEEvent("a", "1"),
                                                           SSEEvent("message", "2")]


@pytest.mark.parametrize("line_ending", [b"\n", b"\r\n", b"\r"])
def test_sse_any_split(line_ending: bytes) -> None:
    text = "event: content_block_delta\ndata: {\"text\": \"h\u00e9llo \u2603\"}\n\n" * 3
    stream = text.replace("\n", line_ending.decode()).encode()
    expected = parse(stream)
    assert len(expected) == 3
    for split in range(1, len(stream)):
        assert parse(stream[:split], stream[split:]) == expected, f"split at byte {split}"


def test_sse_byte_by_byte() -> None:
    stream = b"event: a\r\ndata: \xe2\x98\x83\r\n\r\n"
    assert parse(*(stream[i:i + 1] for i in range(len(stream)))) == [SSEEvent("a", "\u2603")]


def test_sse_trailing_carriage_return_completed_at_close() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\r\r") == []
    assert parser.close() == [SSEEvent("message", "x")]


# Stream translation


def event(data: dict[str, Any]) -> SSEEvent:
    return SSEEvent(data["type"], json.dumps(data))


START = {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
    "content": [], "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 5}}}
TEXT_EVENTS = [
    START,
    {"type": "ping"},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"output_tokens": 9}},
    {"type": "message_stop"},
]
TOOL_EVENTS = [
    START,
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Ok."}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}},
    {"type": "content_block_delta", "index": 1,
     "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 1,
     "delta": {"type": "input_json_delta", "partial_json": '{"city": '}},
    {"type": "content_block_delta", "index": 1,
     "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {
        "type": "tool_use", "id": "toolu_B", "name": "get_time", "input": {}}},
    {"type": "content_block_delta", "index": 2,
     "delta": {"type": "input_json_delta", "partial_json": "{}"}},
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
     "usage": {"output_tokens": 30}},
    {"type": "message_stop"},
]


def translate(events: list[dict[str, Any]], *, include_usage: bool = False,
              ) -> tuple[list[dict[str, Any]], StreamTranslator]:
    translator = StreamTranslator(created=1700000000, model="requested",
                                  include_usage=include_usage)
    chunks = []
    for data in events:
        chunks.extend(translator.feed(event(data)))
    return chunks, translator


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]


def test_stream_text_chunks() -> None:
    chunks, translator = translate(TEXT_EVENTS)
    assert deltas(chunks) == [{"role": "assistant", "content": ""}, {"content": "Hel"},
                              {"content": "lo"}, {}]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None, None, None, "stop"]
    assert translator.finished


def test_stream_chunk_envelope() -> None:
    chunks, _ = translate(TEXT_EVENTS)
    for chunk in chunks:
        assert chunk["id"] == "msg_1"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["created"] == 1700000000
        assert chunk["model"] == "claude-test"
        assert "usage" not in chunk


def test_stream_usage_chunk() -> None:
    chunks, _ = translate(TEXT_EVENTS, include_usage=True)
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 30, "completion_tokens": 9,
                                   "total_tokens": 39,
                                   "prompt_tokens_details": {"cached_tokens": 5}}


def test_stream_tool_calls() -> None:
    chunks, _ = translate(TOOL_EVENTS)
    tool_deltas = [delta["tool_calls"][0] for delta in deltas(chunks) if "tool_calls" in delta]
    assert tool_deltas == [
        {"index": 0, "id": "toolu_A", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"city": '}},
        {"index": 0, "function": {"arguments": '"Paris"}'}},
        {"index": 1, "id": "toolu_B", "type": "function",
         "function": {"name": "get_time", "arguments": ""}},
        {"index": 1, "function": {"arguments": "{}"}},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_tool_arguments_join_to_json() -> None:
    chunks, _ = translate(TOOL_EVENTS)
    arguments: dict[int, str] = {}
    for delta in deltas(chunks):
        for call in delta.get("tool_calls", []):
            arguments[call["index"]] = arguments.get(call["index"], "") + \
                call["function"]["arguments"]
    assert json.loads(arguments[0]) == {"city": "Paris"}
    assert json.loads(arguments[1]) == {}


def test_stream_tool_start_with_input() -> None:
    chunks, _ = translate([START, {"type": "content_block_start", "index": 0, "content_block": {
        "type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}}])
    assert deltas(chunks)[1]["tool_calls"][0]["function"]["arguments"] == '{"a":1}'


def test_stream_skips_thinking() -> None:
    events = [
        START,
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "signature_delta", "signature": "abc"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "some_future_event"},
    ]
    chunks, _ = translate(events)
    assert deltas(chunks) == [{"role": "assistant", "content": ""}]


@pytest.mark.parametrize(("stop_reason", "expected"), [
    ("max_tokens", "length"), ("stop_sequence", "stop"), ("refusal", "content_filter")])
def test_stream_finish_reason(stop_reason: str, expected: str) -> None:
    chunks, _ = translate([START, {"type": "message_delta",
                                   "delta": {"stop_reason": stop_reason}, "usage": {}}])
    assert chunks[-1]["choices"][0]["finish_reason"] == expected


def test_stream_not_finished_without_message_stop() -> None:
    _, translator = translate(TEXT_EVENTS[:-1])
    assert not translator.finished


def test_stream_error_event() -> None:
    translator = StreamTranslator(created=0, model="m")
    translator.feed(event(START))
    with pytest.raises(ProviderError) as caught:
        translator.feed(event({"type": "error", "error": {"type": "overloaded_error",
                                                          "message": "Overloaded"}}))
    assert caught.value.status_code == 503
    assert caught.value.error_type == "overloaded_error"
    assert caught.value.message == "Overloaded"


@pytest.mark.parametrize("data", ["not json", "[1]"])
def test_stream_malformed_event(data: str) -> None:
    translator = StreamTranslator(created=0, model="m")
    with pytest.raises(ProviderError) as caught:
        translator.feed(SSEEvent("message_start", data))
    assert caught.value.status_code == 502


def test_stream_tool_input_for_text_block() -> None:
    translator = StreamTranslator(created=0, model="m")
    with pytest.raises(ProviderError):
        translator.feed(event({"type": "content_block_delta", "index": 3, "delta": {
            "type": "input_json_delta", "partial_json": "{}"}}))
