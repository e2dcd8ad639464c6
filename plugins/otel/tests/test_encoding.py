"""The OTLP encoder: byte for byte what the OpenTelemetry SDK and its OTLP encoder send.

Each case builds one span twice: once through the SDK (`TracerProvider`, then
`encode_spans` of opentelemetry-exporter-otlp-proto-common), the way this plugin
built spans before it encoded them itself, and once through `SpanEncoder`. The
serialized `ExportTraceServiceRequest` must be the same bytes, so a collector
cannot tell the two apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from hookgate import CallEvent
from hookgate_otel.encoding import KeyValueCache, SpanData, SpanEncoder, encode_varint
from hookgate_otel.logger import INSTRUMENTATION_NAME
from hookgate_otel.spans import PER_CALL_ATTRIBUTES, _to_json, span_attributes, span_name, time_ns

RESOURCE = {"service.name": "gw-test", "telemetry.sdk.language": "python",
            "deployment.environment": "test"}


class QueuedIds(IdGenerator):
    """Hands out the given trace and span ids in order, so the SDK spans match ours."""

    def __init__(self, spans: Sequence[SpanData]) -> None:
        self._trace_ids = [int.from_bytes(span.trace_id, "big") for span in spans]
        self._span_ids = [int.from_bytes(span.span_id, "big") for span in spans]

    def generate_trace_id(self) -> int:
        return self._trace_ids.pop(0)

    def generate_span_id(self) -> int:
        return self._span_ids.pop(0)


def sdk_request(spans: Sequence[SpanData], resource: Mapping[str, Any] = RESOURCE) -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource(dict(resource)), id_generator=QueuedIds(spans))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(INSTRUMENTATION_NAME)
    for span in spans:
        sdk_span = tracer.start_span(span.name, context=otel_context.Context(),
                                     kind=trace.SpanKind.CLIENT, attributes=span.attributes,
                                     start_time=span.start_time_unix_nano)
        if span.error_message is not None:
            sdk_span.set_status(trace.Status(trace.StatusCode.ERROR, span.error_message))
        sdk_span.end(end_time=span.end_time_unix_nano)
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def own_request(spans: Sequence[SpanData], resource: Mapping[str, Any] = RESOURCE) -> bytes:
    encoder = SpanEncoder(resource, INSTRUMENTATION_NAME, uncached_keys=PER_CALL_ATTRIBUTES)
    return encoder.encode_request([encoder.encode_span(span) for span in spans])


def span_of(event: CallEvent, span_id: bytes = b"\x01\x02\x03\x04\x05\x06\x07\x08") -> SpanData:
    start = time_ns(event.start_time)
    return SpanData(
        trace_id=bytes.fromhex(event.call_id),
        span_id=span_id,
        name=span_name(event),
        start_time_unix_nano=start,
        end_time_unix_nano=max(time_ns(event.end_time), start),
        attributes=span_attributes(event),
        error_message=event.error.message if event.error is not None else None,
    )


def stream_event(make_event: Callable[..., CallEvent]) -> CallEvent:
    event = make_event(stream=True, params={"temperature": 0.7, "top_p": 0.9, "seed": -3,
                                            "n": 2, "stop": ["\n", "END"]})
    return event.model_copy(update={
        "first_token_time": event.start_time + timedelta(milliseconds=150)})


EVENTS: dict[str, Callable[[Callable[..., CallEvent]], CallEvent]] = {
    "success": lambda make: make(),
    "failure": lambda make: make("failure"),
    "stream": stream_event,
    "without content": lambda make: make().without_content(),
    "failure without content": lambda make: make("failure").without_content(),
    "embedding": lambda make: make(call_type="embedding", messages=["one", "two"],
                                   response=None),
    "unicode content": lambda make: make(messages=[
        {"role": "user", "content": "Grüße, 你好 🌍 " * 20}]),
    "tool calls": lambda make: make(messages=[
        {"role": "user", "content": "find it"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "lookup", "arguments": "{\"q\": 1}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "found"}]),
}


@pytest.mark.parametrize("case", list(EVENTS))
def test_event_same_as_sdk(case: str, make_event: Callable[..., CallEvent]) -> None:
    span = span_of(EVENTS[case](make_event))

    assert own_request([span]) == sdk_request([span])


def test_batch_same_as_sdk(make_event: Callable[..., CallEvent]) -> None:
    spans = [span_of(make_event(), bytes([index + 1]) * 8) for index in range(3)]
    spans.append(span_of(make_event("failure"), b"\x09" * 8))

    assert own_request(spans) == sdk_request(spans)


def test_repeated_span_same_bytes(make_event: Callable[..., CallEvent]) -> None:
    # The second encoding takes the repeating attributes from the cache.
    encoder = SpanEncoder(RESOURCE, INSTRUMENTATION_NAME, uncached_keys=PER_CALL_ATTRIBUTES)
    span = span_of(make_event())

    first = encoder.encode_span(span)
    second = encoder.encode_span(span)

    assert first == second
    assert encoder.encode_request([second]) == sdk_request([span])


EDGE_ATTRIBUTES: dict[str, Any] = {
    "empty": "",
    "unicode": "naïve ✓ 東京",
    "long": "x" * 200,
    "very long": "y" * 20_000,
    "negative": -5,
    "zero": 0,
    "int64 max": 2**63 - 1,
    "int64 min": -(2**63),
    "float": 0.1,
    "negative float": -2.5e-300,
    "true": True,
    "false": False,
    "strings": ("a", "", "ü"),
    "ints": (1, -2),
    "bools": (True, False),
    "floats": (1.5,),
    "empty tuple": (),
}


@pytest.mark.parametrize(("key", "value"), list(EDGE_ATTRIBUTES.items()))
def test_attribute_same_as_sdk(key: str, value: Any, make_event: Callable[..., CallEvent]) -> None:
    span = span_of(make_event())._replace(attributes={key: value})

    assert own_request([span]) == sdk_request([span])


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, {"nested": "map"}, b"raw"])
def test_unencodable_attribute_left_out(value: Any, make_event: Callable[..., CallEvent]) -> None:
    span = span_of(make_event())._replace(attributes={"kept": "yes", "odd": value})

    request = ExportTraceServiceRequest.FromString(own_request([span]))

    attributes = request.resource_spans[0].scope_spans[0].spans[0].attributes
    assert [attribute.key for attribute in attributes] == ["kept"]


@pytest.mark.parametrize("message", ["", "upstream returned 502 Bad Gateway"])
def test_error_status_same_as_sdk(message: str, make_event: Callable[..., CallEvent]) -> None:
    span = span_of(make_event("failure"))._replace(error_message=message)

    assert own_request([span]) == sdk_request([span])


def test_resource_with_types_same_as_sdk(make_event: Callable[..., CallEvent]) -> None:
    resource = {"service.name": "gw", "service.instance.id": "i-1", "host.cpu.count": 2,
                "feature.enabled": True}
    span = span_of(make_event())

    assert own_request([span], resource) == sdk_request([span], resource)


def test_lone_surrogate_replaced(make_event: Callable[..., CallEvent]) -> None:
    # A protobuf string must be valid UTF-8. The SDK's encoder drops such an attribute.
    span = span_of(make_event())._replace(attributes={"text": "a\ud800b"})

    request = ExportTraceServiceRequest.FromString(own_request([span]))

    attribute = request.resource_spans[0].scope_spans[0].spans[0].attributes[0]
    assert attribute.value.string_value == "a?b"


def test_decoded_span_fields(make_event: Callable[..., CallEvent]) -> None:
    event = make_event("failure")
    span = span_of(event)

    request = ExportTraceServiceRequest.FromString(own_request([span]))

    resource_spans = request.resource_spans[0]
    decoded = resource_spans.scope_spans[0].spans[0]
    assert resource_spans.scope_spans[0].scope.name == "hookgate_otel"
    assert decoded.trace_id.hex() == event.call_id
    assert decoded.span_id == span.span_id
    assert decoded.name == "chat gpt-4o-mini"
    assert decoded.kind == decoded.SpanKind.SPAN_KIND_CLIENT
    assert decoded.start_time_unix_nano == span.start_time_unix_nano
    assert decoded.end_time_unix_nano == span.end_time_unix_nano
    assert decoded.status.code == decoded.status.StatusCode.STATUS_CODE_ERROR
    assert decoded.status.message == "upstream returned 502 Bad Gateway"


def test_cache_keeps_value_types(make_event: Callable[..., CallEvent]) -> None:
    # 1, 1.0 and True are equal dictionary keys, but each has its own OTLP type.
    encoder = SpanEncoder(RESOURCE, INSTRUMENTATION_NAME)
    span = span_of(make_event())
    values = ["1", 1, 1.0, True, ("1",), (1,), (1.0,), (True,), ("1",), "1"]

    for value in values:
        changed = span._replace(attributes={"number": value})
        encoded = encoder.encode_request([encoder.encode_span(changed)])
        assert encoded == sdk_request([changed]), value


def test_cache_bounded() -> None:
    cache = KeyValueCache(b"\x4a", frozenset({"id"}), max_entries=8)
    for index in range(50):
        cache.encode({"model": f"model-{index}", "id": f"call-{index}"})

    assert len(cache._fields) <= 8
    assert all(key != "id" for key, _ in cache._fields)


@pytest.mark.parametrize(("value", "expected"), [
    (0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
    (2**64 - 1, b"\xff" * 9 + b"\x01"),
])
def test_varint(value: int, expected: bytes) -> None:
    assert encode_varint(value) == expected


@pytest.mark.parametrize("value", [
    [{"role": "user", "parts": [{"type": "text", "content": "héllo \"quoted\" \n"}]}],
    [{"role": "assistant", "parts": [], "finish_reason": "stop"}],
    {"number": 1.5, "integer": 10**18, "flag": True, "none": None, "nested": [[1], []]},
])
def test_to_json_same_as_json_dumps(value: Any) -> None:
    # The content attributes were made with json.dumps before orjson replaced it.
    assert json.loads(_to_json(value)) == value
    assert _to_json(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_to_json_beyond_orjson() -> None:
    value = {"big": 2**70, 1: "int key"}

    assert _to_json(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))
