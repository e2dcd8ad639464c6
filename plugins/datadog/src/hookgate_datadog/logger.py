"""The Datadog logger: gzip-compressed batches of logs to the Logs intake v2."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from hookgate import CallEvent, hookimpl
from hookgate.batching import (
    BatchingLogger,
    BatchSender,
    SendFunction,
    SendResult,
    http_post,
    redact_url,
)
from hookgate_datadog.payload import encode_log
from hookgate_datadog.settings import DatadogSettings, parse_settings

__all__ = ["DatadogLogger", "make_send_function"]

logger = logging.getLogger(__name__)

USER_AGENT = "hookgate-datadog/0.1.0"

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


class DatadogLogger(BatchingLogger):
    """Sends one Datadog log per finished call, tagged with model, status and service.

    `BatchingLogger` provides the event, flush and health hooks: they encode the
    event and queue it, and a `BatchSender` thread compresses and posts the batches
    within the intake's limits, retries and splits them, and flushes at shutdown.
    """

    def __init__(self) -> None:
        super().__init__("datadog")
        self.settings: DatadogSettings | None = None

    @hookimpl
    def logger_setup(self, name: str, settings: Mapping[str, Any]) -> None:
        """Validate the settings and start the sender; NotConfigured without an API key."""
        parsed = parse_settings(name, settings)
        self.name = name
        self.settings = parsed
        self.sender = BatchSender(name, make_send_function(parsed), **parsed.sender)
        logger.info("%s: sending to %s as service %s", name, redact_url(parsed.url),
                    parsed.service)

    def encode_event(self, event: CallEvent, max_bytes: int) -> tuple[bytes, bool]:
        """Encode one log; a log over `max_bytes` is sent without its content."""
        assert self.settings is not None, "logger_setup sets the settings before the sender"
        return encode_log(event, self.settings, max_bytes=max_bytes)

    def health_details(self) -> Mapping[str, Any]:
        return {"url": redact_url(self.settings.url)} if self.settings is not None else {}
