"""The metrics of one prometheus logger and how each event and dispatcher snapshot feeds them."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hookgate import CallEvent
from hookgate_prometheus.settings import PrometheusSettings

__all__ = ["OTHER_MODEL", "Metrics"]

OTHER_MODEL = "other"
"""The `model` label of every model seen after `max_models` distinct ones."""
UNKNOWN_MODEL = "unknown"
"""The `model` label of a failure before any deployment was chosen (an unknown model)."""


class Metrics:
    """Every metric of one prometheus logger, created in `registry`.

    In multiprocess mode prometheus_client writes each value to a file of its own
    per process as well, and a scrape reads all those files instead of `registry`.
    """

    def __init__(self, settings: PrometheusSettings, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._max_models = settings.max_models
        self._models: set[str] = set()
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, int, int]] = {}

        self.requests = Counter(
            "hookgate_requests", "LLM calls that finished, by requested model and status "
            "(success or failure).", ["model", "status"], registry=registry)
        self.errors = Counter(
            "hookgate_request_errors", "Failed LLM calls by requested model and error type.",
            ["model", "error_type"], registry=registry)
        self.prompt_tokens = Counter(
            "hookgate_prompt_tokens", "Prompt (input) tokens as the provider reported them.",
            ["model"], registry=registry)
        self.completion_tokens = Counter(
            "hookgate_completion_tokens", "Completion (output) tokens as the provider "
            "reported them.", ["model"], registry=registry)
        self.duration = Histogram(
            "hookgate_request_duration_seconds", "Time from receiving a request to sending "
            "the last byte of its response or its error.", ["model", "status"],
            buckets=settings.duration_buckets, registry=registry)
        self.first_token = Histogram(
            "hookgate_time_to_first_token_seconds", "For streams: time from receiving the "
            "request to sending the first chunk with content.", ["model"],
            buckets=settings.first_token_buckets, registry=registry)

        self.delivered = Counter(
            "hookgate_callback_delivered", "Events each logger callback handled without "
            "error.", ["callback"], registry=registry)
        self.failed = Counter(
            "hookgate_callback_failed", "Events whose logger callback raised or timed out.",
            ["callback"], registry=registry)
        self.dropped = Counter(
            "hookgate_callback_dropped", "Events dropped before reaching a logger callback "
            "(backlog full or shutting down).", ["callback"], registry=registry)
        self.backlog = Gauge(
            "hookgate_callback_backlog", "Events queued for or being handled by each logger "
            "callback.", ["callback"], multiprocess_mode="livesum", registry=registry)

    def observe(self, event: CallEvent) -> None:
        """Count one finished call."""
        model = self._model_label(event)
        self.requests.labels(model, event.status).inc()
        self.duration.labels(model, event.status).observe(max(event.latency_ms, 0.0) / 1000)

        if event.error is not None:
            self.errors.labels(model, event.error.type).inc()
        if event.usage is not None:
            self.prompt_tokens.labels(model).inc(event.usage.prompt_tokens)
            self.completion_tokens.labels(model).inc(event.usage.completion_tokens)
        if event.stream and event.first_token_time is not None:
            seconds = (event.first_token_time - event.start_time).total_seconds()
            self.first_token.labels(model).observe(max(seconds, 0.0))

    def sync_callbacks(self, stats: Mapping[str, Any]) -> None:
        """Bring the per-callback metrics up to a `Dispatcher.stats()` snapshot.

        The dispatcher keeps plain integers per process; counters only go up, so each
        call adds what changed since the last one.
        """
        with self._lock:
            for name, plugin in stats.items():
                current = (plugin.delivered, plugin.failed, plugin.dropped)
                previous = self._seen.get(name, (0, 0, 0))
                for counter, now, before in zip((self.delivered, self.failed, self.dropped),
                                                current, previous, strict=True):
                    if now > before:
                        counter.labels(name).inc(now - before)
                    else:
                        # Touch the child so that a callback with nothing to report yet
                        # still shows as 0 instead of missing.
                        counter.labels(name)
                self._seen[name] = current
                self.backlog.labels(name).set(plugin.backlog)

    def _model_label(self, event: CallEvent) -> str:
        # A client can send any model name, and an unknown one still produces a failure
        # event. Capping the distinct values keeps a client from adding series without
        # bound.
        if event.provider is None and event.status == "failure":
            return UNKNOWN_MODEL
        model = event.model
        with self._lock:
            if model in self._models:
                return model
            if len(self._models) >= self._max_models:
                return OTHER_MODEL
            self._models.add(model)
        return model

    @property
    def model_count(self) -> int:
        with self._lock:
            return len(self._models)
