"""The Langfuse logger: batches of traces and generations to the public ingestion API."""

from __future__ import annotations

import base64
import json
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
from hookgate_langfuse.payload import call_id_of, encode_call
from hookgate_langfuse.settings import LangfuseSettings, parse_settings

__all__ = ["LangfuseLogger", "make_send_function"]

logger = logging.getLogger(__name__)

BATCH_PREFIX = b'{"batch":['
BATCH_SUFFIX = b"]}"
USER_AGENT = "hookgate-langfuse/0.1.0"


def make_send_function(settings: LangfuseSettings) -> SendFunction:
    """Return the send function that POSTs one batch to the ingestion endpoint.

    The Basic credentials live only in this closure's headers, which are neither
    logged nor returned.
    """
    token = base64.b64encode(f"{settings.public_key}:{settings.secret_key}".encode()).decode()
    headers = {
        "Authorization": f"Basic {token}",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    url = settings.ingestion_url
    secrets = (settings.secret_key, token)

    def send(entries: Sequence[bytes], timeout: float) -> SendResult:
        body = BATCH_PREFIX + b",".join(entries) + BATCH_SUFFIX
        response = http_post(url, body, headers, timeout)
        if response.status == 207:
            return _partial_result(response.status, response.body, entries)
        return response.to_result(secrets=secrets)

    return send


def _partial_result(status: int, body: bytes, entries: Sequence[bytes]) -> SendResult:
    """Map the per-event errors of a 207 response to the entries they belong to.

    Langfuse returns 207 for every accepted request and lists the events it could
    not process under `errors`, each with its envelope id.

    NOTE: such events are counted as failed and not retried, even when their own
    status is 5xx, so a transient error inside Langfuse loses them.
    """
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        return SendResult(status, detail="unreadable 207 body; counted as accepted")
    if not errors:
        return SendResult(status)

    failed_calls = {call_id_of(str(error.get("id", ""))) for error in errors
                    if isinstance(error, dict)}
    rejected = []
    for index, entry in enumerate(entries):
        call_id = json.loads(b"[" + entry + b"]")[0]["body"]["id"]
        if call_id in failed_calls:
            rejected.append(index)
    first = errors[0] if isinstance(errors[0], dict) else {}
    detail = (f"{len(errors)} events rejected, first: status {first.get('status')} "
              f"{str(first.get('message'))[:200]}")
    return SendResult(status, rejected=tuple(rejected), detail=detail)


class LangfuseLogger(BatchingLogger):
    """Sends one Langfuse trace with one generation per finished call.

    `BatchingLogger` provides the event, flush and health hooks: they encode the
    event and queue it, and a `BatchSender` thread posts the batches, retries and
    splits them, and flushes at shutdown.
    """

    def __init__(self) -> None:
        super().__init__("langfuse")
        self.settings: LangfuseSettings | None = None

    @hookimpl
    def logger_setup(self, name: str, settings: Mapping[str, Any]) -> None:
        """Validate the settings and start the sender; NotConfigured without keys."""
        parsed = parse_settings(name, settings)
        self.name = name
        self.settings = parsed
        self.sender = BatchSender(name, make_send_function(parsed),
                                  payload_overhead=len(BATCH_PREFIX + BATCH_SUFFIX),
                                  **parsed.sender)
        logger.info("%s: sending to %s", name, redact_url(parsed.ingestion_url))

    def encode_event(self, event: CallEvent, max_bytes: int) -> tuple[bytes, bool]:
        """Encode the trace and generation; a call over `max_bytes` loses input and output."""
        assert self.settings is not None, "logger_setup sets the settings before the sender"
        return encode_call(event, environment=self.settings.environment,
                           release=self.settings.release, max_bytes=max_bytes)

    def health_details(self) -> Mapping[str, Any]:
        return {"host": redact_url(self.settings.host)} if self.settings is not None else {}
