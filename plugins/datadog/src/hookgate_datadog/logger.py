"""The Datadog logger: gzip-compressed batches of logs to the Logs intake v2."""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hookgate import CallEvent, hookimpl
from hookgate.batching import (
    BatchSender,
    SendFunction,
    SendResult,
    flush_budget,
    http_post,
    redact_url,
)
from hookgate_datadog.payload import encode_log
from hookgate_datadog.settings import DatadogSettings, parse_settings

__all__ = ["DatadogLogger", "make_send_function"]

logger = logging.getLogger(__name__)

USER_AGENT = "hookgate-datadog/0.1.0"

TRUNCATION_LOG_INTERVAL = 60.0
"""Seconds between two warnings about logs sent without their content."""

# Level 6 is zlib's default: most of level 9's ratio on JSON at a fraction of its time.
GZIP_LEVEL = 6


def make_send_function(settings: DatadogSettings) -> SendFunction:
    """Return the send function that POSTs one gzip-compressed JSON array of logs.

    The API key lives only in this closure's headers, which are neither logged nor
    returned.
    """
    headers = {
        "DD-API-KEY": settings.api_key,
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "User-Agent": USER_AGENT,
    }
    url = settings.url

    def send(entries: Sequence[bytes], timeout: float) -> SendResult:
        body = gzip.compress(b"[" + b",".join(entries) + b"]", compresslevel=GZIP_LEVEL)
        return http_post(url, body, headers, timeout).to_result(secrets=(settings.api_key,))

    return send


class DatadogLogger:
    """Sends one Datadog log per finished call, tagged with model, status and service.

    The hooks only encode the event and queue it, so they return at once. A
    `BatchSender` thread compresses and posts the batches within the intake's
    limits, retries and splits them, and flushes at shutdown.
    """

    def __init__(self) -> None:
        self.name = "datadog"
        self.settings: DatadogSettings | None = None
        self.sender: BatchSender | None = None
        self.truncated = 0
        """Logs whose content was removed to fit the 1 MB limit per log."""
        self._lock = threading.Lock()
        self._next_truncation_log = 0.0

    @hookimpl
    def logger_setup(self, name: str, settings: Mapping[str, Any]) -> None:
        """Validate the settings and start the sender; NotConfigured without an API key."""
        parsed = parse_settings(name, settings)
        self.name = name
        self.settings = parsed
        self.sender = BatchSender(name, make_send_function(parsed), **parsed.sender)
        logger.info("%s: sending to %s as service %s", name, redact_url(parsed.url),
                    parsed.service)

    @hookimpl
    def log_success(self, event: CallEvent) -> None:
        self._submit(event)

    @hookimpl
    def log_failure(self, event: CallEvent) -> None:
        self._submit(event)

    @hookimpl
    def logger_flush(self, timeout: float) -> None:
        """Send what is queued within `timeout`; raise FlushIncomplete if some is lost."""
        if self.sender is not None:
            self.sender.close(flush_budget(timeout)).raise_if_incomplete(self.name)

    @hookimpl
    def logger_health(self) -> Mapping[str, Any] | None:
        if self.sender is None or self.settings is None:
            return None
        with self._lock:
            truncated = self.truncated
        return {"url": redact_url(self.settings.url), "truncated": truncated,
                **self.sender.health()}

    def _submit(self, event: CallEvent) -> None:
        if self.sender is None or self.settings is None:
            raise RuntimeError(f"{self.name}: an event arrived before logger_setup")
        data, truncated = encode_log(event, self.settings,
                                     max_bytes=self.sender.max_entry_bytes)
        if truncated:
            with self._lock:
                self.truncated += 1
                now = time.monotonic()
                warn = now >= self._next_truncation_log
                if warn:
                    self._next_truncation_log = now + TRUNCATION_LOG_INTERVAL
            if warn:
                logger.warning("%s: the log of call %s exceeded %d bytes and is sent without "
                               "its content (%d such logs so far)", self.name, event.call_id,
                               self.sender.max_entry_bytes, self.truncated)
        self.sender.submit(data, event.call_id)
