"""The otel logger plugin: one OpenTelemetry span per LLM call, exported over OTLP/HTTP."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from hookgate import CallEvent, NotConfigured, hookimpl
from hookgate.batching import BatchSender, flush_budget
from hookgate.ratelimit import RateLimitedLog
from hookgate_otel.encoding import SpanData, SpanEncoder, random_span_id, random_trace_id
from hookgate_otel.export import OtlpHttpClient
from hookgate_otel.settings import (
    DEFAULT_ENDPOINT,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_SERVICE_NAME,
    TRACES_PATH,
    OtelSettings,
    export_options,
    parse_settings,
    redact_url,
)
from hookgate_otel.spans import PER_CALL_ATTRIBUTES, span_attributes, span_name, time_ns

__all__ = ["OtelLogger"]

logger = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "hookgate_otel"
DROP_LOG_INTERVAL = 30.0


def _user_agent() -> str:
    try:
        return f"hookgate-otel/{version('hookgate-otel')}"
    except PackageNotFoundError:
        return "hookgate-otel"


def _trace_id(call_id: str) -> bytes:
    """Return the call id as a 16-byte trace id if it is a valid W3C trace id, else a random one.

    The call id is the trace id so that a span, the `x-hookgate-call-id` response header
    and every other logger's record of the call share one id.
    """
    if len(call_id) == 32:
        try:
            trace_id = bytes.fromhex(call_id)
        except ValueError:
            pass
        else:
            # fromhex skips spaces, so a 32-character id with spaces gives fewer bytes.
            if len(trace_id) == 16 and any(trace_id):
                return trace_id
    return random_trace_id()


class OtelLogger:
    """Sends one span per call to an OTLP/HTTP endpoint.

    The hook encodes the span straight into OTLP protobuf bytes and queues them, and
    a `BatchSender` thread posts them in batches. No OpenTelemetry tracer provider is
    created or installed, so the proxy's own instrumentation (or a second otel logger
    with other settings) is unaffected.
    """

    def __init__(self) -> None:
        self.name = "otel"
        self.settings: OtelSettings | None = None
        self.sender: BatchSender | None = None
        self._client: OtlpHttpClient | None = None
        self._encoder: SpanEncoder | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._accepted = 0
        self._dropped = 0
        self._too_large_at_submit = 0
        self._rejected_by_sender = 0
        self._max_pending = 1
        self._drop_log = RateLimitedLog(logger, logging.ERROR, DROP_LOG_INTERVAL)
        self._too_large_log = RateLimitedLog(logger, logging.ERROR, DROP_LOG_INTERVAL)

    @hookimpl
    def logger_setup(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            # OTEL_SDK_DISABLED switches every OpenTelemetry SDK component off, and this
            # plugin honours it like an SDK exporter. Reporting it beats counting every
            # call as queued.
            raise NotConfigured("OTEL_SDK_DISABLED=true switches OpenTelemetry export off; "
                                "unset it to export spans, or remove otel from the callbacks")
        parsed = parse_settings(name, settings)
        options = export_options(parsed, _user_agent())
        endpoint = redact_url(parsed.traces_endpoint)
        encoder = SpanEncoder(self._resource(parsed).attributes, INSTRUMENTATION_NAME,
                              uncached_keys=PER_CALL_ATTRIBUTES)
        client = OtlpHttpClient(parsed.traces_endpoint, options, encoder.encode_request,
                                plugin_name=name, shown_endpoint=endpoint)

        self.settings = parsed
        self._encoder = encoder
        self._client = client
        self._max_pending = parsed.max_queue_size
        self.sender = BatchSender(
            name,
            client.send,
            max_batch_entries=parsed.max_export_batch_size,
            max_batch_bytes=parsed.max_request_bytes or DEFAULT_MAX_REQUEST_BYTES,
            payload_overhead=encoder.request_overhead,
            separator_bytes=0,
            flush_interval=parsed.schedule_delay,
            max_queue_entries=parsed.max_queue_size,
            # The backlog is bounded in spans (max_queue_size, checked in _record),
            # not in bytes.
            max_queue_bytes=sys.maxsize,
            # OtlpHttpClient.send retries by the OTLP rules itself.
            max_attempts=1,
            request_timeout=options.timeout,
        )
        logger.info("plugin %s: exporting spans to %s (queue %d spans, batch %d, every %.1f s)",
                    name, endpoint, parsed.max_queue_size, parsed.max_export_batch_size,
                    parsed.schedule_delay)
        if parsed.traces_endpoint == f"{DEFAULT_ENDPOINT}/{TRACES_PATH}":
            logger.info("plugin %s: no endpoint configured, so spans go to the OpenTelemetry "
                        "default %s; set callback_settings.%s.endpoint or "
                        "OTEL_EXPORTER_OTLP_ENDPOINT to change it", name, endpoint, name)

    @staticmethod
    def _resource(parsed: OtelSettings) -> Resource:
        # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES and adds
        # the telemetry.sdk.* attributes. An explicit service_name in the config wins.
        resource = Resource.create()
        if parsed.service_name:
            return resource.merge(Resource({SERVICE_NAME: parsed.service_name}))
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            return resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
        return resource

    @hookimpl
    def log_success(self, event: CallEvent) -> None:
        self._record(event)

    @hookimpl
    def log_failure(self, event: CallEvent) -> None:
        self._record(event)

    def _record(self, event: CallEvent) -> None:
        sender, encoder = self.sender, self._encoder
        if sender is None or encoder is None:
            self._drop(event, "the logger is not set up")
            return
        # Checked before encoding as well, so that a full backlog costs no encoding.
        reason = self._backlog_problem(sender)
        if reason is not None:
            self._drop(event, reason)
            return

        # An event that cannot be mapped raises here, before anything is counted, and
        # the dispatcher counts the error.
        entry = encoder.encode_span(self._span(event))
        if len(entry) > sender.max_entry_bytes:
            with self._lock:
                self._accepted += 1
                self._too_large_at_submit += 1
            self._too_large_log.log("plugin %s: span for call %s dropped: its %d bytes do not "
                                    "fit in a request of max_request_bytes", self.name,
                                    event.call_id, len(entry))
            return

        with self._lock:
            # Checked again because the sender's thread or a shutdown may have changed
            # the state while the span was encoded.
            reason = self._backlog_problem(sender)
            if reason is None:
                if sender.submit(entry, event.call_id):
                    self._accepted += 1
                    return
                self._rejected_by_sender += 1
                reason = "the batch sender rejected it"
        self._drop(event, reason)

    @staticmethod
    def _span(event: CallEvent) -> SpanData:
        start = time_ns(event.start_time)
        return SpanData(
            trace_id=_trace_id(event.call_id),
            span_id=random_span_id(),
            name=span_name(event),
            start_time_unix_nano=start,
            end_time_unix_nano=max(time_ns(event.end_time), start),
            attributes=span_attributes(event),
            error_message=event.error.message if event.error is not None else None,
        )

    def _backlog_problem(self, sender: BatchSender) -> str | None:
        """Return why no span can be queued now, or None if one can."""
        if self._closed:
            return "the logger is shut down"
        # Every submitted span ends up sent, failed or dropped, so the difference is
        # the spans queued or being sent. The limit thus covers the batch in flight too.
        counters = sender.counters
        pending = counters.submitted - counters.sent - counters.failed - counters.dropped
        if pending >= self._max_pending:
            return f"backlog full ({self._max_pending} spans)"
        return None

    def _drop(self, event: CallEvent, reason: str) -> None:
        with self._lock:
            self._dropped += 1
            dropped = self._dropped
        self._drop_log.log("plugin %s: span for call %s dropped: %s (%d dropped so far)",
                           self.name, event.call_id, reason, dropped)

    @hookimpl
    def logger_flush(self, timeout: float) -> None:
        sender, client = self.sender, self._client
        if sender is None or client is None or self._closed:
            return
        with self._lock:
            self._closed = True

        report = sender.close(flush_budget(timeout))
        # Ends a retry wait of a send still in flight: its spans are counted as failed.
        client.shutdown()

        unsent = report.unsent + report.in_flight
        if unsent:
            logger.error("plugin %s: %d spans not exported before the shutdown deadline "
                         "(%.1f s): %s", self.name, unsent, timeout,
                         sender.counters.last_error or "export still in progress")
        else:
            logger.info("plugin %s: flushed, no span left unsent (%d exported since startup)",
                        self.name, sender.counters.sent)

    @hookimpl
    def logger_health(self) -> Mapping[str, Any]:
        sender, client = self.sender, self._client
        if sender is None or client is None:
            return {"accepted": 0, "exported": 0, "failed": 0, "too_large": 0,
                    "dropped": self._dropped, "failed_requests": 0, "last_status": None,
                    "last_error": None, "last_error_time": None, "last_success_time": None,
                    "queued": 0, "endpoint": None, "backend": "unknown"}
        state = sender.health()
        with self._lock:
            accepted = self._accepted
            dropped = self._dropped
            too_large_at_submit = self._too_large_at_submit
            rejected = self._rejected_by_sender
        # The sender counts as dropped the spans it rejected in submit (counted here as
        # dropped), single spans the backend rejected with 413, and the spans still
        # queued at close. The last two were accepted and then lost.
        lost_after_submit = state["dropped"] - rejected
        failed = state["failed"] + lost_after_submit + too_large_at_submit
        backend = state["backend"]
        return {
            "accepted": accepted,
            "exported": state["sent"],
            "failed": failed,
            "too_large": state["oversized"] + too_large_at_submit,
            "dropped": dropped,
            "failed_requests": client.failed_requests,
            "last_status": client.last_status,
            "last_error": state["last_error"],
            "last_error_time": state["last_error_time"],
            "last_success_time": state["last_success_time"],
            "queued": accepted - state["sent"] - failed,
            "endpoint": redact_url(self.settings.traces_endpoint) if self.settings else None,
            "backend": "rejecting" if backend == "error" else backend,
        }
