"""The Langfuse logger against a loopback stand-in for the Langfuse ingestion API."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from hookgate import LaneSettings, PluginStatus
from hookgate.testing import DispatchHarness, make_event
from hookgate_langfuse import LangfuseLogger


def settings_for(receiver: Any, **extra: Any) -> dict[str, Any]:
    settings = {
        "host": receiver.host,
        "public_key": receiver.public_key,
        "secret_key": receiver.secret_key,
        "flush_interval": 0.05,
        "max_retry_delay": 0.05,
    }
    settings.update(extra)
    return settings


def start(harness: DispatchHarness, settings: dict[str, Any],
          lane: LaneSettings | None = None) -> LangfuseLogger:
    plugin = LangfuseLogger()
    record = harness.add(plugin, "langfuse", settings=settings, lane=lane)
    assert record.status is PluginStatus.ACTIVE, record.error
    return plugin


def health(plugin: LangfuseLogger) -> dict[str, Any]:
    result = plugin.logger_health()
    assert result is not None
    return dict(result)


def assert_no_secret(receiver: Any, caplog: pytest.LogCaptureFixture) -> None:
    secret = receiver.secret_key
    for body in receiver.raw_bodies:
        assert secret.encode() not in body
        assert b"Authorization" not in body
    assert secret not in caplog.text


# Normal path


def test_success_becomes_trace_and_generation(hookgate_harness: DispatchHarness,
                                              langfuse_receiver: Any,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    start(hookgate_harness, settings_for(langfuse_receiver, environment="staging"))
    event = make_event()

    hookgate_harness.send(event)
    traces = langfuse_receiver.wait_for_traces(1)

    trace = traces[event.call_id]
    generation = langfuse_receiver.generations()[event.call_id]
    assert trace["userId"] == "user-17"
    assert trace["tags"] == ["test"]
    assert trace["environment"] == "staging"
    assert trace["input"][1] == {"role": "user", "content": "what llm are you"}
    assert trace["output"] == {"role": "assistant", "content": "A test model."}
    assert generation["model"] == "gpt-4o-mini"
    assert generation["level"] == "DEFAULT"
    assert generation["usage"] == {"input": 21, "output": 9, "total": 30, "unit": "TOKENS"}
    assert generation["modelParameters"] == {"temperature": 0.2, "max_tokens": 64}
    assert generation["metadata"]["key_alias"] == "team-a-key"
    assert generation["metadata"]["latency_ms"] == 420.0
    assert generation["startTime"].endswith("Z")
    assert "client_ip" not in json.dumps(generation)
    assert langfuse_receiver.statuses == [207]
    assert_no_secret(langfuse_receiver, caplog)


def test_failure_sent_with_error_level(hookgate_harness: DispatchHarness,
                                       langfuse_receiver: Any) -> None:
    start(hookgate_harness, settings_for(langfuse_receiver))
    event = make_event("failure")

    hookgate_harness.send(event)
    langfuse_receiver.wait_for_traces(1)

    generation = langfuse_receiver.generations()[event.call_id]
    assert generation["level"] == "ERROR"
    assert generation["statusMessage"] == "upstream returned 502 Bad Gateway"
    assert generation["metadata"]["error"]["status_code"] == 502
    assert "output" not in generation


def test_log_content_false_sends_no_content(hookgate_harness: DispatchHarness,
                                            langfuse_receiver: Any) -> None:
    start(hookgate_harness, settings_for(langfuse_receiver, log_content=False),
          lane=LaneSettings(log_content=False))
    event = make_event()

    hookgate_harness.send(event)
    langfuse_receiver.wait_for_traces(1)

    body = b"".join(langfuse_receiver.raw_bodies)
    assert b"what llm are you" not in body
    assert b"A test model." not in body
    assert langfuse_receiver.generations()[event.call_id]["usage"]["total"] == 30


def test_health_reports_counters(hookgate_harness: DispatchHarness,
                                 langfuse_receiver: Any) -> None:
    plugin = start(hookgate_harness, settings_for(langfuse_receiver))

    for _ in range(3):
        hookgate_harness.send(make_event())
    langfuse_receiver.wait_for_traces(3)
    hookgate_harness.close()

    report = health(plugin)
    assert report["backend"] == "ok"
    assert report["sent"] == 3
    assert report["failed"] == 0
    assert report["last_status"] == 207
    assert report["host"] == langfuse_receiver.host


# Backend trouble


def test_backend_down_then_back(hookgate_harness: DispatchHarness,
                                make_receiver: Callable[..., Any]) -> None:
    """Case: the backend refuses 1,500 calls, then recovers."""
    receiver = make_receiver()
    port = receiver.port
    receiver.stop()
    plugin = start(hookgate_harness, settings_for(
        receiver, max_queue=100, batch_size=50, max_attempts=4, max_retry_delay=0.3))

    queued_samples = []
    for index in range(1500):
        hookgate_harness.send(make_event())
        if index % 50 == 0:
            queued_samples.append(health(plugin)["queued"])
    hookgate_harness.drain(30)
    outage = health(plugin)
    assert max(queued_samples) <= 100
    assert outage["queued"] <= 100
    assert outage["backend"] == "unreachable"
    assert outage["dropped"] > 0

    _wait(lambda: health(plugin)["queued"] == 0 and health(plugin)["in_flight"] == 0)
    back = make_receiver(port, public_key=receiver.public_key, secret_key=receiver.secret_key)
    later = [make_event() for _ in range(20)]
    for event in later:
        hookgate_harness.send(event)
    hookgate_harness.drain()
    report = hookgate_harness.close(10)

    final = health(plugin)
    traces = back.traces()
    assert report.complete
    assert {event.call_id for event in later} <= set(traces)
    assert back.repeats == 0
    assert final["sent"] == len(traces)
    assert final["sent"] + final["failed"] + final["dropped"] == 1520
    assert final["submitted"] == 1520


def test_slow_backend_does_not_block_hooks(hookgate_harness: DispatchHarness,
                                           langfuse_receiver: Any) -> None:
    langfuse_receiver.gate = threading.Event()
    start(hookgate_harness, settings_for(langfuse_receiver))

    events = [make_event() for _ in range(5)]
    for event in events:
        hookgate_harness.send(event)
    hookgate_harness.drain(5)
    received_while_blocked = len(langfuse_receiver.traces())
    langfuse_receiver.gate.set()
    langfuse_receiver.wait_for_traces(5)

    assert received_while_blocked == 0
    assert set(langfuse_receiver.traces()) == {event.call_id for event in events}


def test_timeout_retry_creates_nothing_twice(hookgate_harness: DispatchHarness,
                                             langfuse_receiver: Any) -> None:
    langfuse_receiver.delay = 0.6
    plugin = start(hookgate_harness, settings_for(langfuse_receiver, request_timeout=0.3,
                                                  max_attempts=4))
    event = make_event()

    hookgate_harness.send(event)
    langfuse_receiver.wait_for_traces(1)
    langfuse_receiver.delay = 0
    hookgate_harness.close(10)

    assert health(plugin)["retried"] >= 1
    assert len(langfuse_receiver.traces()) == 1
    assert langfuse_receiver.repeats >= 1


def test_429_then_success(hookgate_harness: DispatchHarness, langfuse_receiver: Any) -> None:
    langfuse_receiver.script.append((429, {"Retry-After": "1"}))
    plugin = start(hookgate_harness, settings_for(langfuse_receiver, max_retry_delay=2.0))
    event = make_event()

    hookgate_harness.send(event)
    langfuse_receiver.wait_for_traces(1)
    hookgate_harness.close(10)

    report = health(plugin)
    assert langfuse_receiver.statuses == [429, 207]
    assert report["retried"] == 1
    assert report["sent"] == 1


def test_5xx_retried_until_attempts_run_out(hookgate_harness: DispatchHarness,
                                            langfuse_receiver: Any) -> None:
    langfuse_receiver.script.extend([(503, {})] * 3)
    plugin = start(hookgate_harness, settings_for(langfuse_receiver, max_attempts=3))

    hookgate_harness.send(make_event())
    hookgate_harness.drain()
    hookgate_harness.close(10)

    report = health(plugin)
    assert langfuse_receiver.statuses == [503, 503, 503]
    assert report["failed"] == 1
    assert report["last_status"] == 503


def test_413_splits_large_batch(hookgate_harness: DispatchHarness,
                                make_receiver: Callable[..., Any]) -> None:
    """Case: the backend responds with 413 to a batch."""
    receiver = make_receiver(max_body_bytes=12_000)
    plugin = start(hookgate_harness, settings_for(receiver, flush_interval=3600,
                                                  batch_size=40))
    events = [make_event() for _ in range(40)]
    huge = make_event(messages=[{"role": "user", "content": "x" * 20_000}])

    for event in [*events, huge]:
        hookgate_harness.send(event)
    hookgate_harness.drain()
    hookgate_harness.close(10)

    report = health(plugin)
    assert set(receiver.traces()) == {event.call_id for event in events}
    assert 413 in receiver.statuses
    assert report["splits"] >= 1
    assert report["oversized"] == 1
    assert report["dropped"] == 1
    assert report["sent"] == 40


def test_call_over_size_limit_sent_without_content(hookgate_harness: DispatchHarness,
                                                   langfuse_receiver: Any) -> None:
    plugin = start(hookgate_harness, settings_for(langfuse_receiver))
    event = make_event(messages=[{"role": "user", "content": "x" * 3_600_000}])

    hookgate_harness.send(event)
    trace = langfuse_receiver.wait_for_traces(1)[event.call_id]
    hookgate_harness.close(10)

    report = health(plugin)
    assert "input" not in trace
    assert "the limit is 3499988" in trace["metadata"]["truncated"]
    assert report["truncated"] == 1
    assert report["sent"] == 1


@pytest.mark.parametrize("wrong", ["public_key", "secret_key"])
def test_wrong_credentials_reported(wrong: str, hookgate_harness: DispatchHarness,
                                    langfuse_receiver: Any,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(langfuse_receiver, batch_size=5, flush_interval=3600)
    settings[wrong] = "wrong-" + settings[wrong]
    plugin = start(hookgate_harness, settings)

    for _ in range(10):
        hookgate_harness.send(make_event())
    hookgate_harness.drain()
    hookgate_harness.close(10)

    report = health(plugin)
    assert report["backend"] == "credentials rejected"
    assert langfuse_receiver.statuses == [401, 401]
    assert report["failed"] == 10
    assert report["retried"] == 0
    assert settings["secret_key"] not in caplog.text


def test_event_rejected_in_207_counted_failed(hookgate_harness: DispatchHarness,
                                              langfuse_receiver: Any) -> None:
    good, bad = make_event(), make_event()
    langfuse_receiver.reject_prefixes = (bad.call_id,)
    plugin = start(hookgate_harness, settings_for(langfuse_receiver, flush_interval=3600))

    hookgate_harness.send(good)
    hookgate_harness.send(bad)
    hookgate_harness.drain()
    hookgate_harness.close(10)

    report = health(plugin)
    assert set(langfuse_receiver.traces()) == {good.call_id}
    assert langfuse_receiver.statuses == [207]
    assert report["sent"] == 1
    assert report["failed"] == 1
    assert "rejected" in report["last_error"]


# Shutdown


def test_shutdown_delivers_queued_events(hookgate_harness: DispatchHarness,
                                         langfuse_receiver: Any) -> None:
    """Case: a long flush interval, 50 calls, then shutdown."""
    plugin = start(hookgate_harness, settings_for(langfuse_receiver, flush_interval=3600))
    events = [make_event() for _ in range(50)]

    for event in events:
        hookgate_harness.send(event)
    hookgate_harness.drain()
    queued = health(plugin)["queued"]
    report = hookgate_harness.close(10)

    assert queued == 50
    assert report.complete
    assert set(langfuse_receiver.traces()) == {event.call_id for event in events}
    assert health(plugin)["sent"] == 50


def test_shutdown_with_backend_down_logs_each_call(hookgate_harness: DispatchHarness,
                                                   langfuse_receiver: Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    langfuse_receiver.stop()
    plugin = start(hookgate_harness, settings_for(langfuse_receiver, flush_interval=3600,
                                                  max_retry_delay=0.5, max_attempts=100))
    events = [make_event() for _ in range(50)]

    for event in events:
        hookgate_harness.send(event)
    hookgate_harness.drain()
    shutdown = hookgate_harness.close(1.0)

    report = health(plugin)
    assert shutdown.flush_failed == ["langfuse"]
    assert report["sent"] == 0
    assert report["failed"] + report["dropped"] == 50
    for event in events:
        assert event.call_id in caplog.text


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met within the timeout"
        time.sleep(0.02)
