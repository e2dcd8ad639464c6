"""How the otel logger copes with its backend: errors, limits, outages and shutdown."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from hookgate import CallEvent
from hookgate.testing import DispatchHarness
from hookgate_otel import OtelLogger


def fast_settings(receiver: Any, **overrides: Any) -> dict[str, Any]:
    return {"endpoint": receiver.endpoint, "schedule_delay": 0.05, "timeout": 3, **overrides}


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


def test_content_type_protobuf(hookgate_harness: DispatchHarness, receiver: Any,
                               make_event: Callable[..., CallEvent]) -> None:
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver))
    hookgate_harness.send(make_event())

    request = receiver.wait_for_requests(1)[0]
    assert request.path == "/v1/traces"
    assert request.headers["content-type"] == "application/x-protobuf"
    assert request.status == 200


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_compression_setting(hookgate_harness: DispatchHarness, receiver: Any,
                             make_event: Callable[..., CallEvent], compression: str) -> None:
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver, compression=compression))
    event = make_event()
    hookgate_harness.send(event)

    span = receiver.wait_for_spans(1)[0]
    assert receiver.requests[0].headers["content-encoding"] == compression
    assert span.trace_id == event.call_id


def test_retry_429_then_success(hookgate_harness: DispatchHarness, receiver: Any,
                                make_event: Callable[..., CallEvent]) -> None:
    receiver.responses.append((429, {"Retry-After": "0"}))
    logger = OtelLogger()
    hookgate_harness.add(logger, "otel", fast_settings(receiver))
    hookgate_harness.send(make_event())

    receiver.wait_for_spans(1)
    wait_until(lambda: logger.logger_health()["exported"] == 1)
    assert [request.status for request in receiver.requests] == [429, 200]
    assert logger.logger_health()["failed"] == 0


@pytest.mark.parametrize("status", [502, 503, 504])
def test_retry_gateway_errors(hookgate_harness: DispatchHarness, receiver: Any,
                              make_event: Callable[..., CallEvent], status: int) -> None:
    receiver.responses.append((status, {"Retry-After": "0"}))
    hookgate_harness.add(OtelLogger(), "otel", fast_settings(receiver))
    hookgate_harness.send(make_event())

    receiver.wait_for_spans(1)
    assert [request.status for request in receiver.requests] == [status, 200]


def test_500_not_retried(hookgate_harness: DispatchHarness, receiver: Any,
                         make_event: Callable[..., CallEvent]) -> None:
    receiver.responses.append((500, {}))
    logger = OtelLogger()
    hookgate_harness.add(logger, "otel", fast_settings(receiver))
    hookgate_harness.send(make_event())

    wait_until(lambda: logger.logger_health()["failed"] == 1)
    health = logger.logger_health()
    assert [request.status for request in receiver.requests] == [500]
    assert health["last_status"] == 500
    assert health["backend"] == "rejecting"


def test_forbidden_not_retried(hookgate_harness: DispatchHarness, receiver: Any,
                               make_event: Callable[..., CallEvent]) -> None:
    receiver.responses.append((403, {}))
    logger = OtelLogger()
    hookgate_harness.add(logger, "otel", fast_settings(receiver))
    hookgate_harness.send(make_event())

    wait_until(lambda: logger.logger_health()["failed"] == 1)
    assert [request.status for request in receiver.requests] == [403]
    assert logger.logger_health()["backend"] == "credentials rejected"


def test_wrong_credentials_reported(hookgate_harness: DispatchHarness, receiver: Any,
                                    make_event: Callable[..., CallEvent]) -> None:
    receiver.token = "right-token"
    logger = OtelLogger()
    hookgate_harness.add(logger, "otel", fast_settings(
        receiver, headers={"authorization": "Bearer wrong-token"}))
    for _ in range(3):
        hookgate_harness.send(make_event())

    wait_until(lambda: logger.logger_health()["failed"] == 3)
    health = logger.logger_health()
    assert health["backend"] == "credentials rejected"
    assert health["last_status"] == 401
    assert "wrong-token" not in repr(health)
    assert len(receiver.requests) <= 3
    assert receiver.spans == []


def test_batch_split_on_413(hookgate_harness: DispatchHarness, receiver: Any,
                            make_event: Callable[..., CallEvent]) -> None:
    receiver.max_spans = 3
    logger = OtelLogger()
    # A long schedule delay makes the ten spans leave as one batch, at the flush.
    hookgate_harness.add(logger, "otel", fast_settings(receiver, schedule_delay=60))
    events = [make_event() for _ in range(10)]
    for event in events:
        hookgate_harness.send(event)
    hookgate_harness.drain()
    hookgate_harness.close()

    statuses = [request.status for request in receiver.requests]
    assert statuses[0] == 413
    assert receiver.requests[0].span_count == 10
    assert all(request.span_count <= 3 for request in receiver.requests if request.status == 200)
    assert sorted(span.trace_id for span in receiver.spans) == \
        sorted(event.call_id for event in events)
    assert logger.logger_health()["too_large"] == 0


def test_oversized_span_dropped(hookgate_harness: DispatchHarness, receiver: Any,
                                make_event: Callable[..., CallEvent]) -> None:
    receiver.max_bytes = 20_000
    logger = OtelLogger()
    hookgate_harness.add(logger, "otel", fast_settings(receiver, schedule_delay=60))
    huge = make_event(messages=[{"role": "user", "content": "x" * 50_000}])
    small = [make_event() for _ in range(4)]
    for event in [small[0], small[1], huge, small[2], small[3]]:
        hookgate_harness.send(event)
    hookgate_harness.drain()
    hookgate_harness.close()

    health = logger.logger_health()
    assert health["too_large"] == 1
    assert health["failed"] == 1
    assert health["exported"] == 4
    assert sorted(span.trace_id for span in receiver.spans) == \
        sorted(event.call_id for event in small)
    # Halving five spans down to one takes at most 2 * 5 - 1 requests.
    assert len(receiver.requests) <= 9


def test_request_size_limit_splits(hookgate_harness: DispatchHarness, receiver: Any,
                                   make_event: Callable[..., CallEvent]) -> None:
    logger = OtelLogger()
    hookgate_harness.add(logger, "otel", fast_settings(receiver, schedule_delay=60,
                                                        max_request_bytes=20_000))
    huge = make_event(messages=[{"role": "user", "content": "x" * 50_000}])
    small = [make_event() for _ in range(6)]
    for event in [*small[:3], huge, *small[3:]]:
        hookgate_harness.send(event)
    hookgate_harness.drain()
    hookgate_harness.close()

    health = logger.logger_health()
    assert health["too_large"] == 1
    assert health["exported"] == 6
    assert all(request.body_bytes <= 20_000 for request in receiver.requests)
    assert sorted(span.trace_id for span in receiver.spans) == \
        sorted(event.call_id for event in small)


def test_backend_down_then_back(receiver: Any, make_event: Callable[..., CallEvent]) -> None:
    harness = DispatchHarness(backlog=2000)
    logger = OtelLogger()
    harness.add(logger, "otel", fast_settings(
        receiver, timeout=1, max_queue_size=100, max_export_batch_size=50))
    receiver.stop()

    try:
        before = [make_event() for _ in range(1500)]
        for event in before:
            harness.send(event)
        harness.drain(30)
        health = logger.logger_health()
        assert health["accepted"] + health["dropped"] == 1500
        assert health["dropped"] > 0
        assert health["queued"] <= 100
        assert health["accepted"] - health["exported"] - health["failed"] <= 100

        receiver.start()
        wait_until(lambda: logger.logger_health()["queued"] == 0, timeout=20)
        after = [make_event() for _ in range(20)]
        for event in after:
            harness.send(event)
        harness.drain()
        wait_until(lambda: logger.logger_health()["queued"] == 0, timeout=20)
    finally:
        harness.close()

    received = [span.trace_id for span in receiver.spans]
    assert len(received) == len(set(received))
    assert {event.call_id for event in after} <= set(received)
    assert logger.logger_health()["backend"] == "ok"


def test_shutdown_delivers_queued(receiver: Any, make_event: Callable[..., CallEvent]) -> None:
    harness = DispatchHarness()
    logger = OtelLogger()
    harness.add(logger, "otel", fast_settings(receiver, schedule_delay=600))
    events = [make_event() for _ in range(50)]
    for event in events:
        harness.send(event)
    harness.drain()
    assert receiver.spans == []

    report = harness.close(timeout=10)

    assert report.complete
    assert sorted(span.trace_id for span in receiver.spans) == \
        sorted(event.call_id for event in events)


def test_shutdown_backend_down_counts_unsent(receiver: Any, make_event: Callable[..., CallEvent],
                                             caplog: pytest.LogCaptureFixture) -> None:
    harness = DispatchHarness()
    logger = OtelLogger()
    harness.add(logger, "otel", fast_settings(receiver, schedule_delay=600, timeout=30))
    receiver.stop()
    for _ in range(50):
        harness.send(make_event())
    harness.drain()

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="hookgate_otel"):
        harness.close(timeout=2)
    elapsed = time.monotonic() - started

    assert elapsed < 4
    assert "50 spans not exported before the shutdown deadline" in caplog.text
    assert logger.logger_health()["exported"] == 0


def test_slow_backend_keeps_dispatch_moving(hookgate_harness: DispatchHarness, receiver: Any,
                                            make_event: Callable[..., CallEvent]) -> None:
    receiver.delay = 0.5
    logger = OtelLogger()
    hookgate_harness.add(logger, "otel", fast_settings(receiver, max_queue_size=20,
                                                        max_export_batch_size=5))
    for _ in range(100):
        hookgate_harness.send(make_event())
    hookgate_harness.drain()

    health = logger.logger_health()
    lane = hookgate_harness.stats()["otel"]
    # The hook only queues a span, so a slow backend costs drops, never a hook timeout.
    assert lane.delivered == 100
    assert lane.timed_out == 0
    assert health["accepted"] + health["dropped"] == 100
    assert health["queued"] <= 20


def test_retries_end_at_timeout(hookgate_harness: DispatchHarness, receiver: Any,
                                make_event: Callable[..., CallEvent]) -> None:
    # The first backoff (1 s, 20 % jitter) does not fit in what is left of 1 s.
    for _ in range(10):
        receiver.responses.append((503, {}))
    logger = OtelLogger()
    hookgate_harness.add(logger, "otel", fast_settings(receiver, timeout=1))
    started = time.monotonic()
    hookgate_harness.send(make_event())

    wait_until(lambda: logger.logger_health()["failed"] == 1)
    health = logger.logger_health()
    assert time.monotonic() - started < 3
    assert 1 <= len(receiver.requests) <= 2
    assert health["last_status"] == 503
    assert health["failed_requests"] == 1
    assert health["backend"] == "rejecting"


def test_retries_at_most_six(hookgate_harness: DispatchHarness, receiver: Any,
                             make_event: Callable[..., CallEvent]) -> None:
    for _ in range(8):
        receiver.responses.append((503, {"Retry-After": "0"}))
    logger = OtelLogger()
    hookgate_harness.add(logger, "otel", fast_settings(receiver))
    hookgate_harness.send(make_event())

    wait_until(lambda: logger.logger_health()["failed"] == 1)
    assert [request.status for request in receiver.requests] == [503] * 6
    assert receiver.spans == []


def test_export_exception_counted(hookgate_harness: DispatchHarness, receiver: Any,
                                  make_event: Callable[..., CallEvent],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from hookgate_otel.encoding import SpanEncoder

    def broken_encoder(self: SpanEncoder, span_entries: Any) -> bytes:
        raise RuntimeError("encoder bug")

    monkeypatch.setattr(SpanEncoder, "encode_request", broken_encoder)
    logger = OtelLogger()
    hookgate_harness.add(logger, "otel", fast_settings(receiver))
    hookgate_harness.send(make_event())
    hookgate_harness.send(make_event())

    wait_until(lambda: logger.logger_health()["failed"] == 2)
    health = logger.logger_health()
    assert health["queued"] == 0
    assert health["last_error"] == "RuntimeError: encoder bug"
    assert receiver.requests == []


def test_unreachable_error_hides_query(hookgate_harness: DispatchHarness, receiver: Any,
                                       make_event: Callable[..., CallEvent],
                                       caplog: pytest.LogCaptureFixture) -> None:
    receiver.stop()
    logger = OtelLogger()
    endpoint = f"{receiver.endpoint}/v1/traces?token=s3cret-query"
    hookgate_harness.add(logger, "otel", {"traces_endpoint": endpoint, "schedule_delay": 0.05,
                                          "timeout": 0.5})
    with caplog.at_level(logging.DEBUG):
        hookgate_harness.send(make_event())
        wait_until(lambda: logger.logger_health()["failed"] == 1)

    health = logger.logger_health()
    assert health["backend"] == "unreachable"
    assert health["last_status"] is None
    assert f"{receiver.endpoint}/v1/traces could not be reached" in health["last_error"]
    assert "s3cret-query" not in repr(health)
    assert "s3cret-query" not in caplog.text
