"""The export path: POST each batch of encoded spans to the OTLP/HTTP endpoint.

hookgate-core's `BatchSender` batches the spans, bounds the batch size in spans and
bytes, splits a batch rejected with 413, and flushes within the shutdown deadline.
It calls `OtlpHttpClient.send` for each batch with one attempt allowed, because the
retries follow the rules of the OTLP/HTTP exporter instead (as in
opentelemetry-exporter-otlp-proto-http 1.45.2, whose behaviour the README documents):

- 429, 502, 503 and 504 and connection errors are retried with exponential backoff
  (1, 2, 4, ... s with 20 % jitter, or the server's Retry-After), at most 6 attempts,
  all within the export timeout. A failed connection is tried again at once within
  the same attempt, because it is usually a stale pooled connection.
- Every other status, 500, 401, 403 and 413 included, is returned at once with no
  retry. 500 is not retried because the OTLP specification does not list it as
  retryable.
"""

from __future__ import annotations

import gzip
import logging
import random
import threading
import time
import zlib
from collections.abc import Callable, Sequence

import requests

from hookgate.batching import SendResult, parse_retry_after
from hookgate.ratelimit import RateLimitedLog
from hookgate_otel.settings import ExportOptions

__all__ = ["OtlpHttpClient"]

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
CREDENTIAL_STATUSES = frozenset({401, 403})
MAX_ATTEMPTS = 6
JITTER = 0.2
RETRY_LOG_INTERVAL = 30.0

# The requests exceptions that the OpenTelemetry exporter treats as connection errors.
CONNECTION_ERRORS = (requests.ConnectionError, requests.Timeout)

_COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
}


class OtlpHttpClient:
    """Sends encoded OTLP requests over HTTP with the OTLP exporter's retry rules.

    `send` is the send function of a `BatchSender`: `encode` joins the batch's span
    entries into one `ExportTraceServiceRequest`. Only the sender's thread calls
    `send`, so the counters need no lock: other threads only read them.
    """

    def __init__(self, endpoint: str, options: ExportOptions,
                 encode: Callable[[Sequence[bytes]], bytes], *, plugin_name: str,
                 shown_endpoint: str) -> None:
        self.endpoint = endpoint
        self.timeout = options.timeout
        self.failed_requests = 0
        """Export calls that failed, each after its retries."""
        self.last_status: int | None = None
        """HTTP status of the last attempt, or None if no response arrived."""
        self._encode = encode
        self._compress = _COMPRESSORS.get(options.compression)
        self._headers = dict(options.headers)
        if self._compress is not None and "content-encoding" not in self._headers:
            self._headers["content-encoding"] = options.compression
        self._session = requests.Session()
        self._session.verify = options.verify
        if options.client_certificate is not None:
            self._session.cert = options.client_certificate
        self._plugin_name = plugin_name
        self._shown_endpoint = shown_endpoint
        self._stopping = threading.Event()
        self._retry_log = RateLimitedLog(logger, logging.WARNING, RETRY_LOG_INTERVAL)

    def send(self, entries: Sequence[bytes], timeout: float) -> SendResult:
        """POST one batch, retrying within `timeout` seconds; return the final status.

        Raises `ConnectionError` (an `OSError`) if the last attempt could not reach
        the endpoint. Its message names the exception type and the endpoint without
        user info or query, because the requests message can contain the whole URL.
        """
        body = self._encode(entries)
        if self._compress is not None:
            body = self._compress(body)
        deadline = time.monotonic() + min(timeout, self.timeout)

        for attempt in range(MAX_ATTEMPTS):
            backoff = 2 ** attempt * random.uniform(1 - JITTER, 1 + JITTER)
            try:
                response = self._post(body, deadline)
            except requests.RequestException as error:
                self.last_status = None
                error_type = type(error).__name__
                if isinstance(error, CONNECTION_ERRORS) and self._wait_for_retry(
                        attempt, backoff, deadline, error_type, len(entries)):
                    continue
                self.failed_requests += 1
                raise ConnectionError(f"{error_type}: {self._shown_endpoint} could not be "
                                      f"reached ({attempt + 1} attempts within the export "
                                      "timeout)") from None

            status = response.status_code
            self.last_status = status
            if 200 <= status < 300:
                return SendResult(status)
            if status in RETRYABLE_STATUSES:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is not None:
                    backoff = retry_after
                if self._wait_for_retry(attempt, backoff, deadline, f"HTTP {status}",
                                        len(entries)):
                    continue
            self.failed_requests += 1
            return SendResult(status, detail=self._detail(status, attempt + 1))

        raise AssertionError("unreachable: the last attempt returns or raises")

    def shutdown(self) -> None:
        """End any wait between retries at once and close the connections."""
        self._stopping.set()
        self._session.close()

    def _post(self, body: bytes, deadline: float) -> requests.Response:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise requests.Timeout(f"the export timeout of {self.timeout} s has passed")
        try:
            return self._session.post(self.endpoint, data=body, headers=self._headers,
                                      timeout=remaining)
        except CONNECTION_ERRORS:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
        return self._session.post(self.endpoint, data=body, headers=self._headers,
                                  timeout=remaining)

    def _wait_for_retry(self, attempt: int, backoff: float, deadline: float, outcome: str,
                        spans: int) -> bool:
        """Wait `backoff` seconds before the next attempt; False if none may follow."""
        if (attempt + 1 >= MAX_ATTEMPTS or backoff > deadline - time.monotonic()
                or self._stopping.is_set()):
            return False
        self._retry_log.log("plugin %s: %s from %s; retrying %d spans in %.2f s (attempt %d "
                            "of %d)", self._plugin_name, outcome, self._shown_endpoint, spans,
                            backoff, attempt + 2, MAX_ATTEMPTS)
        return not self._stopping.wait(backoff)

    def _detail(self, status: int, attempts: int) -> str | None:
        if status in CREDENTIAL_STATUSES:
            return (f"the backend rejected the credentials; check the Authorization header "
                    f"in callback_settings.{self._plugin_name}.headers or "
                    "OTEL_EXPORTER_OTLP_HEADERS")
        if status in RETRYABLE_STATUSES:
            return f"{attempts} attempts within the export timeout"
        return None
