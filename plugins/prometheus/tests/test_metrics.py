"""The metrics page of the prometheus logger, scraped from an in-process application."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hookgate import CallEvent, ErrorInfo, LaneSettings, PluginStatus, hookimpl
from hookgate_prometheus import PrometheusLogger


class RaisingLogger:
    @hookimpl
    def log_success(self, event: CallEvent) -> None:
        raise RuntimeError("backend exploded")


class BlockingLogger:
    """Holds its first event until released, so later events pile up in its backlog."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    @hookimpl
    def log_success(self, event: CallEvent) -> None:
        self.started.set()
        self.release.wait(10)


def test_request_counts(metrics_app: Any, make_event: Callable[..., CallEvent]) -> None:
    metrics_app.harness.add(PrometheusLogger(), "prometheus", {})
    metrics_app.attach()
    for _ in range(3):
        metrics_app.harness.send(make_event())
    metrics_app.harness.send(make_event("failure"))
    metrics_app.harness.send(make_event(model="claude-x", provider="anthropic"))
    metrics_app.harness.drain()

    samples = metrics_app.scrape()
    assert samples.value("hookgate_requests_total", model="gpt-4o-mini", status="success") == 3
    assert samples.value("hookgate_requests_total", model="gpt-4o-mini", status="failure") == 1
    assert samples.value("hookgate_requests_total", model="claude-x", status="success") == 1
    assert samples.value("hookgate_request_errors_total", model="gpt-4o-mini",
                         error_type="ProviderError") == 1


def test_token_counters(metrics_app: Any, make_event: Callable[..., CallEvent]) -> None:
    metrics_app.harness.add(PrometheusLogger(), "prometheus", {})
    metrics_app.attach()
    metrics_app.harness.send(make_event())
    metrics_app.harness.send(make_event())
    metrics_app.harness.drain()

    samples = metrics_app.scrape()
    assert samples.value("hookgate_prompt_tokens_total", model="gpt-4o-mini") == 42
    assert samples.value("hookgate_completion_tokens_total", model="gpt-4o-mini") == 18


def test_latency_histogram(metrics_app: Any, make_event: Callable[..., CallEvent]) -> None:
    metrics_app.harness.add(PrometheusLogger(), "prometheus", {"duration_buckets": [0.1, 1]})
    metrics_app.attach()
    metrics_app.harness.send(make_event(latency_ms=50))
    metrics_app.harness.send(make_event(latency_ms=420))
    metrics_app.harness.send(make_event(latency_ms=2500))
    metrics_app.harness.drain()

    samples = metrics_app.scrape()
    labels = {"model": "gpt-4o-mini", "status": "success"}
    assert samples.value("hookgate_request_duration_seconds_bucket", le="0.1", **labels) == 1
    assert samples.value("hookgate_request_duration_seconds_bucket", le="1.0", **labels) == 2
    assert samples.value("hookgate_request_duration_seconds_bucket", le="+Inf", **labels) == 3
    assert samples.value("hookgate_request_duration_seconds_count", **labels) == 3
    assert abs(samples.value("hookgate_request_duration_seconds_sum", **labels) - 2.97) < 1e-9


def test_time_to_first_token(metrics_app: Any, make_event: Callable[..., CallEvent]) -> None:
    metrics_app.harness.add(PrometheusLogger(), "prometheus", {})
    metrics_app.attach()
    stream = make_event(stream=True)
    stream = stream.model_copy(update={
        "first_token_time": stream.start_time + timedelta(milliseconds=80)})
    metrics_app.harness.send(stream)
    metrics_app.harness.send(make_event())
    metrics_app.harness.drain()

    samples = metrics_app.scrape()
    assert samples.value("hookgate_time_to_first_token_seconds_count", model="gpt-4o-mini") == 1
    assert samples.value("hookgate_time_to_first_token_seconds_bucket", model="gpt-4o-mini",
                         le="0.05") == 0
    assert samples.value("hookgate_time_to_first_token_seconds_bucket", model="gpt-4o-mini",
                         le="0.1") == 1


def test_callback_counters(metrics_app: Any, make_event: Callable[..., CallEvent],
                           recording_logger: Any) -> None:
    harness = metrics_app.harness
    harness.add(PrometheusLogger(), "prometheus", {})
    harness.add(recording_logger, "recorder", {})
    harness.add(RaisingLogger(), "broken", {})
    metrics_app.attach()
    for _ in range(4):
        harness.send(make_event())
    harness.send(make_event(), disable=["recorder"])
    harness.drain()

    samples = metrics_app.scrape()
    assert samples.value("hookgate_callback_delivered_total", callback="recorder") == 4
    assert samples.value("hookgate_callback_delivered_total", callback="prometheus") == 5
    assert samples.value("hookgate_callback_failed_total", callback="broken") == 5
    assert samples.value("hookgate_callback_delivered_total", callback="broken") == 0
    assert samples.value("hookgate_callback_dropped_total", callback="recorder") == 0
    assert samples.value("hookgate_callback_backlog", callback="recorder") == 0


def wait_delivered(harness: Any, name: str, count: int, timeout: float = 10.0) -> None:
    """Wait until plugin `name` has received `count` events; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while harness.stats()[name].delivered < count:
        assert time.monotonic() < deadline, f"{name} received fewer than {count} events"
        time.sleep(0.005)


def test_callback_drops_counted(small_backlog_app: Any,
                                make_event: Callable[..., CallEvent]) -> None:
    harness = small_backlog_app.harness
    blocking = BlockingLogger()
    harness.add(PrometheusLogger(), "prometheus", {})
    harness.add(blocking, "slow", {})
    small_backlog_app.attach()
    try:
        harness.send(make_event())
        assert blocking.started.wait(5)
        wait_delivered(harness, "prometheus", 1)
        for sent in range(2, 7):
            harness.send(make_event())
            # The prometheus lane has a backlog of 2 as well: let it keep up, so that
            # only the blocked lane drops, however slow the machine is.
            wait_delivered(harness, "prometheus", sent)
        samples = small_backlog_app.scrape()

        # One event is inside the hook, two fill the backlog of 2, three are dropped;
        # the backlog gauge counts the one inside the hook too.
        assert samples.value("hookgate_callback_backlog", callback="slow") == 3
        assert samples.value("hookgate_callback_dropped_total", callback="slow") == 3
        assert samples.value("hookgate_callback_dropped_total", callback="prometheus") == 0
    finally:
        blocking.release.set()


def test_disabled_request_not_counted(metrics_app: Any,
                                      make_event: Callable[..., CallEvent]) -> None:
    metrics_app.harness.add(PrometheusLogger(), "prometheus", {})
    metrics_app.attach()
    metrics_app.harness.send(make_event())
    metrics_app.harness.send(make_event(), disable=["prometheus"])
    metrics_app.harness.drain()

    samples = metrics_app.scrape()
    assert samples.value("hookgate_requests_total", model="gpt-4o-mini", status="success") == 1


def test_model_labels_capped(metrics_app: Any, make_event: Callable[..., CallEvent]) -> None:
    metrics_app.harness.add(PrometheusLogger(), "prometheus", {"max_models": 2})
    metrics_app.attach()
    for model in ("a", "b", "c", "d", "a"):
        metrics_app.harness.send(make_event(model=model))
    unknown = ErrorInfo(type="ModelNotFound", message="model zzz not found", status_code=400)
    metrics_app.harness.send(make_event("failure", model="zzz", provider=None, error=unknown))
    metrics_app.harness.drain()

    samples = metrics_app.scrape()
    assert samples.value("hookgate_requests_total", model="a", status="success") == 2
    assert samples.value("hookgate_requests_total", model="b", status="success") == 1
    assert samples.value("hookgate_requests_total", model="other", status="success") == 2
    assert samples.value("hookgate_requests_total", model="unknown", status="failure") == 1
    assert samples.value("hookgate_requests_total", model="zzz", status="failure") is None


def test_content_not_exposed(metrics_app: Any, make_event: Callable[..., CallEvent]) -> None:
    metrics_app.harness.add(PrometheusLogger(), "prometheus", {})
    metrics_app.attach()
    metrics_app.harness.send(make_event())
    metrics_app.harness.drain()

    text = metrics_app.client.get("/metrics").text
    assert "what llm are you" not in text
    assert "team-a-key" not in text
    assert "3f2a9c0d4b1e8f76" not in text


def test_token_required(metrics_app: Any, make_event: Callable[..., CallEvent]) -> None:
    metrics_app.harness.add(PrometheusLogger(), "prometheus", {"token": "scrape-secret"})
    metrics_app.attach()

    missing = metrics_app.client.get("/metrics")
    wrong = metrics_app.client.get("/metrics", headers={"Authorization": "Bearer nope"})
    right = metrics_app.client.get("/metrics",
                                   headers={"Authorization": "Bearer scrape-secret"})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert "scrape-secret" not in missing.text


def test_custom_path(metrics_app: Any, make_event: Callable[..., CallEvent]) -> None:
    metrics_app.harness.add(PrometheusLogger(), "prometheus", {"path": "/internal/metrics"})
    metrics_app.attach()
    metrics_app.harness.send(make_event())
    metrics_app.harness.drain()

    samples = metrics_app.scrape("/internal/metrics")
    assert samples.value("hookgate_requests_total", model="gpt-4o-mini", status="success") == 1
    assert metrics_app.client.get("/metrics").status_code == 404


def test_openmetrics_negotiated(metrics_app: Any) -> None:
    metrics_app.harness.add(PrometheusLogger(), "prometheus", {})
    metrics_app.attach()

    plain = metrics_app.client.get("/metrics")
    open_metrics = metrics_app.client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.rstrip().endswith("# EOF")


def test_registries_separate(hookgate_harness: Any, make_event: Callable[..., CallEvent]
                             ) -> None:
    first, second = PrometheusLogger(), PrometheusLogger()
    hookgate_harness.add(first, "prometheus", {})
    hookgate_harness.add(second, "prometheus-b", {"path": "/metrics-b"})
    hookgate_harness.send(make_event(), disable=["prometheus-b"])
    hookgate_harness.drain()

    labels = {"model": "gpt-4o-mini", "status": "success"}
    assert first.metrics.registry.get_sample_value("hookgate_requests_total", labels) == 1
    assert second.metrics.registry.get_sample_value("hookgate_requests_total", labels) is None


def test_entry_point_loads(hookgate_harness: Any) -> None:
    record = hookgate_harness.enable("prometheus", {})

    assert record.status is PluginStatus.ACTIVE
    assert record.distribution == "hookgate-prometheus"
    assert "logger_routes" in record.hooks


def test_multiproc_dir_missing_fails(hookgate_harness: Any, monkeypatch: Any,
                                     tmp_path: Any) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "absent"))
    record = hookgate_harness.add(PrometheusLogger(), "prometheus", {})

    assert record.status is PluginStatus.FAILED
    assert "PROMETHEUS_MULTIPROC_DIR" in (record.error or "")
    assert "not a writable directory" in (record.error or "")


def test_multiproc_late_import_fails(hookgate_harness: Any, monkeypatch: Any,
                                     tmp_path: Any) -> None:
    # prometheus_client is already imported in this process without the variable,
    # which is the mistake this check exists for.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    record = hookgate_harness.add(PrometheusLogger(), "prometheus", {})

    assert record.status is PluginStatus.FAILED
    assert "imported before PROMETHEUS_MULTIPROC_DIR was set" in (record.error or "")


def test_lane_settings_respected(metrics_app: Any, make_event: Callable[..., CallEvent]) -> None:
    metrics_app.harness.add(PrometheusLogger(), "prometheus", {},
                            lane=LaneSettings(success=True, failure=False))
    metrics_app.attach()
    metrics_app.harness.send(make_event())
    metrics_app.harness.send(make_event("failure"))
    metrics_app.harness.drain()

    samples = metrics_app.scrape()
    assert samples.value("hookgate_requests_total", model="gpt-4o-mini", status="success") == 1
    assert samples.value("hookgate_requests_total", model="gpt-4o-mini", status="failure") is None
