"""The otel logger plugin: one OpenTelemetry span per LLM call, exported over OTLP/HTTP."""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from hookgate import CallEvent, NotConfigured, hookimpl
from hookgate_otel.export import Backlog, DeliveryStats, SplittingExporter, StatusSession
from hookgate_otel.settings import (
    DEFAULT_ENDPOINT,
    DEFAULT_SERVICE_NAME,
    TRACES_PATH,
    OtelSettings,
    parse_settings,
    redact_url,
)
from hookgate_otel.spans import span_attributes, span_name, time_ns

__all__ = ["OtelLogger"]

logger = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "hookgate_otel"
COMPRESSIONS = {"none": Compression.NoCompression, "gzip": Compression.Gzip,
                "deflate": Compression.Deflate}

# The trace id of the span being started in this thread: the call id, so that a
# span, the `x-hookgate-call-id` response header and every other logger's record
# of the call share one id.
_next_trace_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "hookgate_otel_trace_id", default=None)


class _CallIdGenerator(IdGenerator):
    """Uses the call id as trace id when it is a valid W3C trace id, else a random one."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        trace_id = _next_trace_id.get()
        if trace_id:
            return trace_id
        return self._random.generate_trace_id()


def _trace_id(call_id: str) -> int | None:
    if len(call_id) != 32:
        return None
    try:
        value = int(call_id, 16)
    except ValueError:
        return None
    return value or None


class OtelLogger:
    """Sends one span per call to an OTLP/HTTP endpoint through a TracerProvider of its own.

    The provider is never installed as the global one, so the proxy's own
    instrumentation (or a second otel logger with other settings) is unaffected.
    """

    def __init__(self) -> None:
        self.name = "otel"
        self.settings: OtelSettings | None = None
        self.stats = DeliveryStats()
        self._backlog = Backlog(1)
        self._provider: TracerProvider | None = None
        self._processor: BatchSpanProcessor | None = None
        self._exporter: SplittingExporter | None = None
        self._tracer: trace.Tracer | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._last_drop_log = 0.0

    @hookimpl
    def logger_setup(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            # The SDK's TracerProvider then returns no-op tracers, so no span would ever
            # be exported. Reporting it beats counting every call as queued.
            raise NotConfigured("OTEL_SDK_DISABLED=true switches the OpenTelemetry SDK off; "
                                "unset it to export spans, or remove otel from the callbacks")
        parsed = parse_settings(name, settings)
        self.settings = parsed
        self._backlog = Backlog(parsed.max_queue_size)

        session = StatusSession()
        otlp = OTLPSpanExporter(
            endpoint=parsed.traces_endpoint,
            headers=parsed.headers,
            timeout=parsed.timeout,
            compression=COMPRESSIONS[parsed.compression] if parsed.compression else None,
            session=session,
            max_request_size=parsed.max_request_bytes,
        )
        endpoint = redact_url(parsed.traces_endpoint)
        self._exporter = SplittingExporter(otlp, session, self._backlog, self.stats,
                                           plugin_name=name, endpoint=endpoint)
        self._processor = BatchSpanProcessor(
            self._exporter,
            max_queue_size=parsed.max_queue_size,
            max_export_batch_size=parsed.max_export_batch_size,
            schedule_delay_millis=parsed.schedule_delay * 1000,
        )
        # ALWAYS_ON instead of the OTEL_TRACES_SAMPLER default, because each span is
        # this logger's record of a call. A sampled-out span would also never leave
        # the backlog count.
        self._provider = TracerProvider(resource=self._resource(parsed), sampler=ALWAYS_ON,
                                        id_generator=_CallIdGenerator())
        self._provider.add_span_processor(self._processor)
        self._tracer = self._provider.get_tracer(INSTRUMENTATION_NAME)
        logger.info("plugin %s: exporting spans to %s (queue %d spans, batch %d, every %.1f s)",
                    name, endpoint, parsed.max_queue_size, parsed.max_export_batch_size,
                    parsed.schedule_delay)
        if parsed.traces_endpoint == f"{DEFAULT_ENDPOINT}/{TRACES_PATH}":
            logger.info("plugin %s: no endpoint configured, so spans go to the OpenTelemetry "
                        "default %s; set callback_settings.%s.endpoint or "
                        "OTEL_EXPORTER_OTLP_ENDPOINT to change it", name, endpoint, name)

    @staticmethod
    def _resource(parsed: OtelSettings) -> Resource:
        # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES. An
        # explicit service_name in the config wins over both.
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
        # Built before a backlog slot is taken: if the event cannot be mapped, the
        # error reaches the dispatcher (counted as failed) and no slot leaks.
        name = span_name(event)
        attributes = span_attributes(event)
        if self._tracer is None or self._closed or not self._backlog.try_acquire():
            self._drop(event)
            return
        with self._lock:
            self.stats.accepted += 1

        token = _next_trace_id.set(_trace_id(event.call_id))
        try:
            span = self._tracer.start_span(name, context=otel_context.Context(),
                                           kind=trace.SpanKind.CLIENT, attributes=attributes,
                                           start_time=time_ns(event.start_time))
        except BaseException:
            self._backlog.release(1)
            raise
        finally:
            _next_trace_id.reset(token)

        if event.error is not None:
            span.set_status(trace.Status(trace.StatusCode.ERROR, event.error.message))
        span.end(end_time=max(time_ns(event.end_time), time_ns(event.start_time)))

    def _drop(self, event: CallEvent) -> None:
        with self._lock:
            self.stats.dropped += 1
            now = time.monotonic()
            log_now = now >= self._last_drop_log + 30.0
            if log_now:
                self._last_drop_log = now
            dropped = self.stats.dropped
        if log_now:
            if self._tracer is None:
                reason = "the logger is not set up"
            elif self._closed:
                reason = "the logger is shut down"
            else:
                reason = f"backlog full ({self._backlog.maximum} spans)"
            logger.error("plugin %s: span for call %s dropped: %s (%d dropped so far)",
                         self.name, event.call_id, reason, dropped)

    @hookimpl
    def logger_flush(self, timeout: float) -> None:
        if self._processor is None or self._exporter is None or self._closed:
            return
        deadline = time.monotonic() + timeout
        self._closed = True
        failed_before = self.stats.failed

        # BatchSpanProcessor.force_flush ignores its timeout argument (SDK 1.45.2), so
        # it runs in a thread of its own and is abandoned at the deadline. Shutting
        # down the exporter then stops any backoff wait between retries.
        flushing = threading.Thread(target=self._processor.force_flush,
                                    name=f"hookgate-{self.name}-flush", daemon=True)
        flushing.start()
        flushing.join(max(0.0, deadline - time.monotonic() - 0.2))
        self._exporter.shutdown()
        closing = threading.Thread(target=self._processor.shutdown,
                                   name=f"hookgate-{self.name}-shutdown", daemon=True)
        closing.start()
        closing.join(max(0.0, deadline - time.monotonic()))

        unsent = self._backlog.pending + (self.stats.failed - failed_before)
        if unsent:
            logger.error("plugin %s: %d spans not exported before the shutdown deadline "
                         "(%.1f s): %s", self.name, unsent, timeout,
                         self.stats.last_error or "export still in progress")
        else:
            logger.info("plugin %s: flushed, no span left unsent (%d exported since startup)",
                        self.name, self.stats.exported)

    @hookimpl
    def logger_health(self) -> Mapping[str, Any]:
        with self._lock:
            stats = asdict(self.stats)
        stats["queued"] = self._backlog.pending
        stats["endpoint"] = redact_url(self.settings.traces_endpoint) if self.settings else None
        stats["backend"] = self._backend_state(stats)
        return stats

    @staticmethod
    def _backend_state(stats: Mapping[str, Any]) -> str:
        last_error_time = stats["last_error_time"] or 0.0
        if not last_error_time or (stats["last_success_time"] or 0.0) > last_error_time:
            return "ok" if stats["last_success_time"] else "unknown"
        if stats["last_status"] in (401, 403):
            return "credentials rejected"
        if stats["last_status"] is None:
            return "unreachable"
        return "rejecting"
