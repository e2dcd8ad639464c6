"""The Datadog logger against a loopback stand-in for the Logs intake v2."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from hookgate import LaneSettings, PluginStatus
from hookgate.testing import DispatchHarness, make_event
from hookgate_datadog import DatadogLogger


def settings_for(intake: Any, **extra: Any) -> dict[str, Any]:
    settings = {
        "url": intake.url,
        "api_key": intake.api_key,
        "service": "llm-gateway",
        "hostname": "gateway-1",
        "flush_interval": 0.05,
        "max_retry_delay": 0.05,
    }
    settings.update(extra)
    return settings


def start(harness: DispatchHarness, settings: dict[str, Any],
          lane: LaneSettings | None = None) -> DatadogLogger:
    plugin = DatadogLogger()
    record = harness.add(plugin, "datadog", settings=settings, lane=lane)
    assert record.status is PluginStatus.ACTIVE, record.error
    return plugin


def health(plugin: DatadogLogger) -> dict[str, Any]:
    result = plugin.logger_health()
    assert result is not None
    return dict(result)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met within the timeout"
        time.sleep(0.02)


# Normal path


def test_success_becomes_tagged_log(hookgate_harness: DispatchHarness, intake: Any,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    start(hookgate_harness, settings_for(intake, tags=["team:a", "env:test"]))
    event = make_event()

    hookgate_harness.send(event)
    log = intake.wait_for_logs(1)[0]

    assert log["ddsource"] == "hookgate"
    assert log["service"] == "llm-gateway"
    assert log["hostname"] == "gateway-1"
    assert log["ddtags"].split(",") == ["model:gpt-4o-mini", "status:success",
                                        "service:llm-gateway", "provider:openai",
                                        "team:a", "env:test"]
    assert log["status"] == "info"
    assert log["message"] == "chat_completion gpt-4o-mini success in 420 ms"
    assert log["duration"] == 420_000_000
    assert log["hookgate"]["call_id"] == event.call_id
    assert log["hookgate"]["usage"] == {"prompt_tokens": 21, "completion_tokens": 9,
                                        "total_tokens": 30}
    assert log["hookgate"]["messages"][1]["content"] == "what llm are you"
    assert intake.request_headers[0]["Content-Encoding"] == "gzip"
    assert "client_ip" not in log["hookgate"]
    assert intake.api_key.encode() not in intake.raw_payloads[0]
    assert intake.api_key not in caplog.text


def test_failure_logged_as_error(hookgate_harness: DispatchHarness, intake: Any) -> None:
    start(hookgate_harness, settings_for(intake))
    event = make_event("failure")

    hookgate_harness.send(event)
    log = intake.wait_for_logs(1)[0]

    assert log["status"] == "error"
    assert "status:failure" in log["ddtags"].split(",")
    assert log["message"].endswith(": ProviderError 502")
    assert log["hookgate"]["error"]["message"] == "upstream returned 502 Bad Gateway"


def test_tag_values_sanitized(hookgate_harness: DispatchHarness, intake: Any) -> None:
    start(hookgate_harness, settings_for(intake))

    hookgate_harness.send(make_event(model="Claude 3.5 Sonnet@Latest"))
    log = intake.wait_for_logs(1)[0]

    assert "model:claude_3.5_sonnet_latest" in log["ddtags"].split(",")
    assert log["hookgate"]["model"] == "Claude 3.5 Sonnet@Latest"


def test_log_content_false_sends_no_content(hookgate_harness: DispatchHarness,
                                            intake: Any) -> None:
    start(hookgate_harness, settings_for(intake, log_content=False),
          lane=LaneSettings(log_content=False))

    hookgate_harness.send(make_event())
    log = intake.wait_for_logs(1)[0]

    assert b"what llm are you" not in intake.raw_payloads[0]
    assert b"A test model." not in intake.raw_payloads[0]
    assert log["hookgate"]["usage"]["total_tokens"] == 30


# Intake limits


def test_batches_keep_entry_limit(hookgate_harness: DispatchHarness, intake: Any) -> None:
    plugin = start(hookgate_harness, settings_for(intake, flush_interval=3600))

    for _ in range(1200):
        hookgate_harness.send(make_event())
    hookgate_harness.drain(30)
    hookgate_harness.close(30)

    assert [len(batch) for batch in intake.batches] == [1000, 200]
    assert 413 not in intake.statuses
    assert health(plugin)["sent"] == 1200


def test_batches_keep_payload_limit(hookgate_harness: DispatchHarness, intake: Any) -> None:
    plugin = start(hookgate_harness, settings_for(intake, flush_interval=3600))
    content = "x" * 600_000

    for _ in range(10):
        hookgate_harness.send(make_event(messages=[{"role": "user", "content": content}]))
    hookgate_harness.drain()
    hookgate_harness.close(30)

    assert all(len(payload) <= 5_000_000 for payload in intake.raw_payloads)
    assert len(intake.batches) >= 2
    assert 413 not in intake.statuses
    assert health(plugin)["sent"] == 10


def test_oversized_log_sent_without_content(hookgate_harness: DispatchHarness,
                                            intake: Any) -> None:
    plugin = start(hookgate_harness, settings_for(intake))
    event = make_event(messages=[{"role": "user", "content": "y" * 1_200_000}])

    hookgate_harness.send(event)
    log = intake.wait_for_logs(1)[0]
    hookgate_harness.close()

    assert "messages" not in log["hookgate"]
    assert "the limit is 1000000" in log["hookgate"]["truncated"]
    assert health(plugin)["truncated"] == 1
    assert health(plugin)["oversized"] == 0


# Backend trouble


def test_backend_down_then_back(hookgate_harness: DispatchHarness,
                                make_intake: Callable[..., Any]) -> None:
    """Case: the backend refuses 1,500 calls, then recovers."""
    down = make_intake()
    port = down.port
    down.stop()
    plugin = start(hookgate_harness, settings_for(
        down, max_queue=100, batch_size=50, max_attempts=4, max_retry_delay=0.3))

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

    wait_until(lambda: health(plugin)["queued"] == 0 and health(plugin)["in_flight"] == 0)
    back = make_intake(port, api_key=down.api_key)
    later = [make_event() for _ in range(20)]
    for event in later:
        hookgate_harness.send(event)
    hookgate_harness.drain()
    report = hookgate_harness.close(10)

    final = health(plugin)
    received = back.call_ids()
    assert report.complete
    assert {event.call_id for event in later} <= set(received)
    assert len(received) == len(set(received))
    assert final["sent"] == len(received)
    assert final["sent"] + final["failed"] + final["dropped"] == 1520


def test_slow_backend_does_not_block_hooks(hookgate_harness: DispatchHarness,
                                           intake: Any) -> None:
    intake.gate = threading.Event()
    start(hookgate_harness, settings_for(intake))
    events = [make_event() for _ in range(5)]

    for event in events:
        hookgate_harness.send(event)
    hookgate_harness.drain(5)
    received_while_blocked = len(intake.logs())
    intake.gate.set()
    intake.wait_for_logs(5)

    assert received_while_blocked == 0
    assert set(intake.call_ids()) == {event.call_id for event in events}


def test_429_then_success(hookgate_harness: DispatchHarness, intake: Any) -> None:
    intake.script.append((429, {"Retry-After": "1"}))
    plugin = start(hookgate_harness, settings_for(intake, max_retry_delay=2.0))

    hookgate_harness.send(make_event())
    intake.wait_for_logs(1)
    hookgate_harness.close(10)

    report = health(plugin)
    assert intake.statuses == [429, 202]
    assert report["retried"] == 1
    assert report["sent"] == 1


def test_5xx_retried_until_attempts_run_out(hookgate_harness: DispatchHarness,
                                            intake: Any) -> None:
    intake.script.extend([(500, {}), (503, {}), (502, {})])
    plugin = start(hookgate_harness, settings_for(intake, max_attempts=3))

    hookgate_harness.send(make_event())
    hookgate_harness.drain()
    hookgate_harness.close(10)

    report = health(plugin)
    assert intake.statuses == [500, 503, 502]
    assert report["failed"] == 1
    assert report["last_status"] == 502


def test_400_not_retried(hookgate_harness: DispatchHarness, intake: Any) -> None:
    intake.script.append((400, {}))
    plugin = start(hookgate_harness, settings_for(intake))

    hookgate_harness.send(make_event())
    hookgate_harness.drain()
    hookgate_harness.close(10)

    assert intake.statuses == [400]
    assert health(plugin)["failed"] == 1


def test_413_splits_large_batch(hookgate_harness: DispatchHarness,
                                make_intake: Callable[..., Any]) -> None:
    """Case: the backend responds with 413 to a batch."""
    intake = make_intake(max_payload_bytes=20_000)
    plugin = start(hookgate_harness, settings_for(intake, flush_interval=3600))
    events = [make_event() for _ in range(40)]

    for event in events:
        hookgate_harness.send(event)
    hookgate_harness.drain()
    hookgate_harness.close(10)

    report = health(plugin)
    assert 413 in intake.statuses
    assert sorted(intake.call_ids()) == sorted(event.call_id for event in events)
    assert report["splits"] >= 1
    assert report["sent"] == 40


def test_413_for_single_log_drops_it(hookgate_harness: DispatchHarness,
                                     make_intake: Callable[..., Any]) -> None:
    intake = make_intake(max_entry_bytes=5_000)
    plugin = start(hookgate_harness, settings_for(intake, flush_interval=3600))
    small = make_event()
    large = make_event(messages=[{"role": "user", "content": "z" * 8_000}])

    hookgate_harness.send(small)
    hookgate_harness.send(large)
    hookgate_harness.drain()
    hookgate_harness.close(10)

    report = health(plugin)
    assert intake.call_ids() == [small.call_id]
    assert report["oversized"] == 1
    assert report["dropped"] == 1
    assert intake.requests <= 3


def test_wrong_api_key_reported(hookgate_harness: DispatchHarness, intake: Any,
                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_key = "wrong-" + intake.api_key
    plugin = start(hookgate_harness, settings_for(intake, api_key=wrong_key, batch_size=5,
                                                  flush_interval=3600))

    for _ in range(10):
        hookgate_harness.send(make_event())
    hookgate_harness.drain()
    hookgate_harness.close(10)

    report = health(plugin)
    assert report["backend"] == "credentials rejected"
    assert intake.statuses == [403, 403]
    assert report["failed"] == 10
    assert report["retried"] == 0
    assert wrong_key not in caplog.text


# Shutdown


def test_shutdown_delivers_queued_events(hookgate_harness: DispatchHarness,
                                         intake: Any) -> None:
    """Case: a long flush interval, 50 calls, then shutdown."""
    plugin = start(hookgate_harness, settings_for(intake, flush_interval=3600))
    events = [make_event() for _ in range(50)]

    for event in events:
        hookgate_harness.send(event)
    hookgate_harness.drain()
    queued = health(plugin)["queued"]
    report = hookgate_harness.close(10)

    assert queued == 50
    assert report.complete
    assert sorted(intake.call_ids()) == sorted(event.call_id for event in events)
    assert health(plugin)["sent"] == 50


def test_shutdown_with_backend_down_logs_each_call(hookgate_harness: DispatchHarness,
                                                   intake: Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    intake.stop()
    plugin = start(hookgate_harness, settings_for(intake, flush_interval=3600,
                                                  max_retry_delay=0.5, max_attempts=100))
    events = [make_event() for _ in range(50)]

    for event in events:
        hookgate_harness.send(event)
    hookgate_harness.drain()
    shutdown = hookgate_harness.close(1.0)

    report = health(plugin)
    assert shutdown.flush_failed == ["datadog"]
    assert report["sent"] == 0
    assert report["failed"] + report["dropped"] == 50
    for event in events:
        assert event.call_id in caplog.text
