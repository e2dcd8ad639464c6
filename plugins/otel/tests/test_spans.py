"""What the otel logger sends: one GenAI span per call, checked at a loopback receiver."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from opentelemetry import trace

from hookgate import CallEvent, LaneSettings, PluginStatus
from hookgate.testing import DispatchHarness
from hookgate_otel import OtelLogger

SPAN_KIND_CLIENT = 3
STATUS_CODE_ERROR = 2


def fast_settings(receiver: Any, **overrides: Any) -> dict[str, Any]:
    return {"endpoint": receiver.endpoint, "schedule_delay": 0.05, "timeout": 3, **overrides}


def test_success_span_attributes(hookgate_harness: DispatchHarness, receiver: Any,
                                 make_event: Callable[..., CallEvent]) -> None:
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver))
    event = make_event(params={"temperature": 0.2, "max_tokens": 64, "stop": ["\n"]})
    hookgate_harness.send(event)

    span = receiver.wait_for_spans(1)[0]
    attributes = span.attributes
    assert span.name == "chat gpt-4o-mini"
    assert span.kind == SPAN_KIND_CLIENT
    assert span.trace_id == event.call_id
    assert span.scope == "hookgate_otel"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.system"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.response.id"] == "chatcmpl-test"
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.usage.input_tokens"] == 21
    assert attributes["gen_ai.usage.output_tokens"] == 9
    assert attributes["gen_ai.request.temperature"] == 0.2
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert attributes["gen_ai.request.stop_sequences"] == ("\n",)
    assert attributes["hookgate.call_id"] == event.call_id
    assert attributes["hookgate.key_alias"] == "team-a-key"
    assert "error.type" not in attributes


def test_span_times_from_event(hookgate_harness: DispatchHarness, receiver: Any,
                               make_event: Callable[..., CallEvent]) -> None:
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver))
    event = make_event(stream=True)
    event = event.model_copy(update={
        "first_token_time": event.start_time + timedelta(milliseconds=150)})
    hookgate_harness.send(event)

    span = receiver.wait_for_spans(1)[0]
    assert span.start_ns // 1000 == int(event.start_time.timestamp() * 1_000_000)
    assert span.end_ns // 1000 == int(event.end_time.timestamp() * 1_000_000)
    assert abs(span.attributes["gen_ai.response.time_to_first_chunk"] - 0.15) < 1e-6
    assert span.attributes["hookgate.stream"] is True


def test_failure_span_error(hookgate_harness: DispatchHarness, receiver: Any,
                            make_event: Callable[..., CallEvent]) -> None:
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver))
    event = make_event("failure")
    hookgate_harness.send(event)

    span = receiver.wait_for_spans(1)[0]
    assert span.status_code == STATUS_CODE_ERROR
    assert span.status_message == "upstream returned 502 Bad Gateway"
    assert span.attributes["error.type"] == "ProviderError"
    assert span.attributes["http.response.status_code"] == 502
    assert "gen_ai.usage.input_tokens" not in span.attributes


def test_content_sent_by_default(hookgate_harness: DispatchHarness, receiver: Any,
                                 make_event: Callable[..., CallEvent]) -> None:
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver))
    hookgate_harness.send(make_event())

    attributes = receiver.wait_for_spans(1)[0].attributes
    inputs = json.loads(attributes["gen_ai.input.messages"])
    outputs = json.loads(attributes["gen_ai.output.messages"])
    assert inputs[1] == {"role": "user", "parts": [{"type": "text",
                                                     "content": "what llm are you"}]}
    assert outputs == [{"role": "assistant", "finish_reason": "stop",
                        "parts": [{"type": "text", "content": "A test model."}]}]


def test_log_content_false_sends_no_content(hookgate_harness: DispatchHarness, receiver: Any,
                                            make_event: Callable[..., CallEvent]) -> None:
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver, log_content=False),
                         lane=LaneSettings(log_content=False))
    hookgate_harness.send(make_event())
    hookgate_harness.send(make_event("failure"))

    spans = receiver.wait_for_spans(2)
    for span in spans:
        assert "gen_ai.input.messages" not in span.attributes
        assert "gen_ai.output.messages" not in span.attributes
        assert "what llm are you" not in repr(span.attributes)
    assert spans[0].attributes["gen_ai.usage.output_tokens"] == 9


def test_tool_calls_in_content(hookgate_harness: DispatchHarness, receiver: Any,
                               make_event: Callable[..., CallEvent]) -> None:
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver))
    call = {"id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": "{\"q\": 1}"}}
    messages = [{"role": "user", "content": "find it"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "found"}]
    hookgate_harness.send(make_event(messages=messages))

    inputs = json.loads(receiver.wait_for_spans(1)[0].attributes["gen_ai.input.messages"])
    assert inputs[1]["parts"] == [{"type": "tool_call", "id": "call_1", "name": "lookup",
                                   "arguments": "{\"q\": 1}"}]
    assert inputs[2] == {"role": "tool", "parts": [
        {"type": "tool_call_response", "id": "call_1", "response": "found"}]}


def test_secrets_never_sent(hookgate_harness: DispatchHarness, receiver: Any,
                            make_event: Callable[..., CallEvent]) -> None:
    receiver.token = "s3cret-token"
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(
        receiver, headers={"Authorization": "Bearer s3cret-token"}))
    hookgate_harness.send(make_event())

    span = receiver.wait_for_spans(1)[0]
    assert "s3cret-token" not in repr(span.attributes)
    assert "s3cret-token" not in repr(span.resource)


def test_service_name_setting(hookgate_harness: DispatchHarness, receiver: Any,
                              make_event: Callable[..., CallEvent]) -> None:
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver, service_name="gw-eu"))
    hookgate_harness.send(make_event())

    assert receiver.wait_for_spans(1)[0].resource["service.name"] == "gw-eu"


def test_service_name_default(hookgate_harness: DispatchHarness, receiver: Any,
                              make_event: Callable[..., CallEvent], monkeypatch: Any) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver))
    hookgate_harness.send(make_event())

    assert receiver.wait_for_spans(1)[0].resource["service.name"] == "hookgate"


def test_environment_configures_export(hookgate_harness: DispatchHarness, receiver: Any,
                                       make_event: Callable[..., CallEvent],
                                       monkeypatch: Any) -> None:
    receiver.token = "env-token"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20env-token")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    hookgate_harness.add(OtelLogger(), "otel", {"schedule_delay": 0.05})
    hookgate_harness.send(make_event())

    span = receiver.wait_for_spans(1)[0]
    assert span.resource["service.name"] == "from-env"
    assert receiver.requests[0].headers["content-encoding"] == "gzip"


def test_global_provider_untouched(hookgate_harness: DispatchHarness, receiver: Any,
                                   make_event: Callable[..., CallEvent]) -> None:
    before = trace.get_tracer_provider()
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver))
    hookgate_harness.send(make_event())
    receiver.wait_for_spans(1)

    assert trace.get_tracer_provider() is before


def test_span_ids_unique(hookgate_harness: DispatchHarness, receiver: Any,
                         make_event: Callable[..., CallEvent]) -> None:
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver))
    for _ in range(5):
        hookgate_harness.send(make_event())

    span_ids = [span.span_id for span in receiver.wait_for_spans(5)]
    assert len(set(span_ids)) == 5
    assert all(len(span_id) == 16 for span_id in span_ids)
    assert "0" * 16 not in span_ids


def test_invalid_call_id_random_trace(hookgate_harness: DispatchHarness, receiver: Any,
                                      make_event: Callable[..., CallEvent]) -> None:
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver))
    hookgate_harness.send(make_event(call_id="not-a-w3c-trace-id"))
    hookgate_harness.send(make_event(call_id="0" * 32))
    hookgate_harness.send(make_event(call_id="ab cd ef 01 23 45 67 89 ab cd ef"))

    trace_ids = [span.trace_id for span in receiver.wait_for_spans(3)]
    assert all(len(trace_id) == 32 for trace_id in trace_ids)
    assert "0" * 32 not in trace_ids
    assert [span.attributes["hookgate.call_id"] for span in receiver.spans] == \
        ["not-a-w3c-trace-id", "0" * 32, "ab cd ef 01 23 45 67 89 ab cd ef"]


def test_health_fields(hookgate_harness: DispatchHarness, receiver: Any,
                       make_event: Callable[..., CallEvent]) -> None:
    logger = OtelLogger()
    hookgate_harness.add(logger, "otel", fast_settings(receiver))
    hookgate_harness.send(make_event())
    receiver.wait_for_spans(1)
    hookgate_harness.close()

    health = logger.logger_health()
    assert set(health) == {"accepted", "exported", "failed", "too_large", "dropped",
                           "failed_requests", "last_status", "last_error", "last_error_time",
                           "last_success_time", "queued", "endpoint", "backend"}
    assert health["accepted"] == 1
    assert health["exported"] == 1
    assert health["queued"] == 0
    assert health["last_status"] == 200
    assert health["backend"] == "ok"
    assert health["endpoint"] == f"{receiver.endpoint}/v1/traces"


def test_entry_point_loads(hookgate_harness: DispatchHarness, receiver: Any) -> None:
    record = hookgate_harness.enable("otel", fast_settings(receiver))

    assert record.status is PluginStatus.ACTIVE
    assert record.distribution == "hookgate-otel"
    assert set(record.hooks) >= {"log_success", "log_failure", "logger_flush", "logger_health"}


def test_sdk_disabled_not_configured(hookgate_harness: DispatchHarness, receiver: Any,
                                    monkeypatch: Any) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    record = hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver))

    assert record.status is PluginStatus.NOT_CONFIGURED
    assert "OTEL_SDK_DISABLED" in (record.error or "")


def test_invalid_setting_fails_plugin(hookgate_harness: DispatchHarness) -> None:
    record = hookgate_harness.add(OtelLogger(), "otel", {"endpoint": "not a url"})

    assert record.status is PluginStatus.FAILED
    assert "callback_settings.otel.endpoint" in (record.error or "")
