"""The export path: the SDK's OTLP/HTTP exporter, wrapped to count, split and report.

What opentelemetry-exporter-otlp-proto-http 1.45.2 does by itself (read in its
`opentelemetry.exporter.otlp.common.http` module and checked by this package's tests):

- 429, 502, 503 and 504 and connection errors are retried with exponential backoff
  (1, 2, 4, ... s, 20 % jitter, or the server's Retry-After), at most 6 attempts, all
  within the export timeout (10 s unless configured). Then the batch is lost.
- Every other status, 500, 401, 403 and 413 included, fails the batch at once with
  no retry. 500 is not retried because the OTLP specification does not list it as
  retryable.
- It never splits a batch.

The wrapper adds what a logger needs on top. It reads the HTTP status of each
attempt through a `requests.Session` of its own (a public parameter of the
exporter). It splits a batch rejected with 413 in halves until each part is
accepted, and drops and counts a single span still rejected. It does the same for a
batch the exporter does not send because it exceeds `max_request_size`. It also
keeps the counters and the last error that `logger_health` reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["Backlog", "DeliveryStats", "SplittingExporter", "StatusSession"]

logger = logging.getLogger(__name__)

ERROR_LOG_INTERVAL = 30.0
CREDENTIAL_STATUSES = frozenset({401, 403})
TOO_LARGE_STATUS = 413


class StatusSession(requests.Session):
    """A requests session that remembers the outcome of the last request in each thread.

    The SDK exporter reports only success or failure. The status distinguishes a 413
    (split the batch) from a 401 (report the credentials) and a refused connection.
    """

    def __init__(self) -> None:
        super().__init__()
        self._outcome = threading.local()

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        self._outcome.status = None
        self._outcome.error = None
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.RequestException as error:
            self._outcome.error = type(error).__name__
            raise
        self._outcome.status = response.status_code
        return response

    def reset(self) -> None:
        self._outcome.status = None
        self._outcome.error = None

    @property
    def last_status(self) -> int | None:
        return getattr(self._outcome, "status", None)

    @property
    def last_error(self) -> str | None:
        return getattr(self._outcome, "error", None)


@dataclass
class DeliveryStats:
    """Counters of one otel logger, in spans unless the name says requests."""

    accepted: int = 0
    """Spans taken into the backlog."""
    exported: int = 0
    """Spans the backend acknowledged with a 2xx status."""
    failed: int = 0
    """Spans lost because the backend rejected them or could not be reached."""
    too_large: int = 0
    """Single spans rejected as too large (413, or over max_request_bytes) even when sent
    alone. They are also counted in `failed`."""
    dropped: int = 0
    """Spans never queued because the backlog was full or the logger was shut down."""
    failed_requests: int = 0
    """Export calls that failed, each after the exporter's own retries."""
    last_status: int | None = None
    """HTTP status of the last export attempt, or None if no response arrived."""
    last_error: str | None = None
    last_error_time: float | None = None
    """Unix time of the last failed export."""
    last_success_time: float | None = None
    """Unix time of the last export the backend acknowledged."""


class Backlog:
    """Counts spans from their creation until their export finished, with a maximum.

    The BatchSpanProcessor has a bounded queue too, but it evicts the oldest span
    without telling the caller. Checking this count before a span is made keeps the
    processor's queue below its own limit, so every loss is counted here instead.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self._pending = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self._pending >= self.maximum:
                return False
            self._pending += 1
            return True

    def release(self, count: int) -> None:
        with self._lock:
            self._pending = max(0, self._pending - count)

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending


class SplittingExporter(SpanExporter):
    """Wraps an OTLP span exporter: splits on 413, counts outcomes, frees backlog slots."""

    def __init__(self, inner: SpanExporter, session: StatusSession, backlog: Backlog,
                 stats: DeliveryStats, *, plugin_name: str, endpoint: str) -> None:
        self._inner = inner
        self._session = session
        self._backlog = backlog
        self._stats = stats
        self._lock = threading.Lock()
        self._shut_down = False
        self._plugin_name = plugin_name
        self._endpoint = endpoint
        self._next_log: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            return self._send(list(spans))
        except Exception as error:
            # The SDK would only log it, and the spans would be lost without a count.
            with self._lock:
                self._stats.failed += len(spans)
                self._stats.failed_requests += 1
                self._stats.last_error = f"export raised {type(error).__name__}: {error}"
                self._stats.last_error_time = time.time()
            logger.exception("plugin %s: export of %d spans raised", self._plugin_name,
                             len(spans))
            return SpanExportResult.FAILURE
        finally:
            self._backlog.release(len(spans))

    def shutdown(self) -> None:
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def _send(self, spans: list[ReadableSpan]) -> SpanExportResult:
        self._session.reset()
        result = self._inner.export(spans)
        status = self._session.last_status

        if result is SpanExportResult.SUCCESS:
            with self._lock:
                self._stats.exported += len(spans)
                self._stats.last_status = status
                self._stats.last_success_time = time.time()
            return result

        # The exporter drops a batch larger than its max_request_size without sending
        # it. No status and no transport error means that, or an encoding error.
        not_sent = status is None and self._session.last_error is None and not self._shut_down
        if len(spans) > 1 and (status == TOO_LARGE_STATUS or not_sent):
            # Each half is a new request. The backend stored none of the rejected batch,
            # so splitting sends no span twice.
            middle = len(spans) // 2
            first = self._send(spans[:middle])
            second = self._send(spans[middle:])
            if first is SpanExportResult.SUCCESS and second is SpanExportResult.SUCCESS:
                return SpanExportResult.SUCCESS
            return SpanExportResult.FAILURE

        self._record_failure(spans, status, self._session.last_error, not_sent)
        return result

    def _record_failure(self, spans: list[ReadableSpan], status: int | None,
                        error: str | None, not_sent: bool) -> None:
        too_large = status == TOO_LARGE_STATUS or not_sent
        if status == TOO_LARGE_STATUS:
            reason = "HTTP 413: the span is larger than the backend accepts; dropped"
        elif status in CREDENTIAL_STATUSES:
            reason = (f"HTTP {status}: the backend rejected the credentials; check the "
                      "Authorization header in callback_settings.otel.headers or "
                      "OTEL_EXPORTER_OTLP_HEADERS")
        elif status is not None:
            reason = f"HTTP {status}"
        elif error is not None:
            reason = f"{error}: the backend could not be reached"
        elif not_sent:
            reason = ("the span is larger than max_request_bytes (or could not be encoded); "
                      "dropped before sending")
        else:
            reason = "the exporter was shut down at the shutdown deadline"

        with self._lock:
            self._stats.failed += len(spans)
            self._stats.failed_requests += 1
            if too_large:
                self._stats.too_large += len(spans)
            self._stats.last_status = status
            self._stats.last_error = reason
            self._stats.last_error_time = time.time()
        self._log_rate_limited(str(status or error or not_sent),
                               "plugin %s: %d spans not exported to %s: %s",
                               self._plugin_name, len(spans), self._endpoint, reason)

    def _log_rate_limited(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next_log.get(kind, 0.0):
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return
            suppressed = self._suppressed.pop(kind, 0)
            self._next_log[kind] = now + ERROR_LOG_INTERVAL
        if suppressed:
            message += " (%d similar failures in the last %.0f s not logged)"
            args = (*args, suppressed, ERROR_LOG_INTERVAL)
        logger.error(message, *args)
