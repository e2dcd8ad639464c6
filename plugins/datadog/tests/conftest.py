"""A loopback stand-in for the Datadog Logs intake v2, and fixtures around it.

It checks what the intake checks on `POST /api/v2/logs`. The `DD-API-KEY` header
must hold the right key (403 otherwise, as Datadog returns for an invalid key). The
body must be gzip-compressed with `Content-Encoding: gzip`, which the plugin always
sends and this server requires, and must be a JSON array of log objects whose
reserved attributes are strings (400 otherwise). The
documented limits give 413: more than 1,000 logs, more than 5 MB before compression,
or one log over 1 MB. The real intake truncates such a log and accepts it, so here
the check is stricter. `LoopbackReceiver` lets tests script 429 and 5xx responses,
slow it down, hold requests, or stop it to refuse connections.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Callable
from typing import Any

import pytest

from hookgate.testing.receiver import LoopbackReceiver, ReceivedRequest, Reply

API_KEY = "dd-test-api-key-0123456789abcdef"
LOGS_PATH = "/api/v2/logs"
STRING_ATTRIBUTES = ("ddsource", "ddtags", "hostname", "service", "message", "status")


class IntakeReceiver(LoopbackReceiver):
    """The stand-in intake; start it with `start()`."""

    def __init__(self, port: int = 0, *, api_key: str = API_KEY,
                 max_entries: int = 1000, max_payload_bytes: int = 5_000_000,
                 max_entry_bytes: int = 1_000_000) -> None:
        super().__init__(port)
        self.api_key = api_key
        self.max_entries = max_entries
        self.max_payload_bytes = max_payload_bytes
        self.max_entry_bytes = max_entry_bytes
        self.batches: list[list[dict[str, Any]]] = []
        """Accepted batches, decoded."""
        self.raw_payloads: list[bytes] = []
        """Accepted request bodies after decompression."""
        self.request_headers: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return self.base_url + LOGS_PATH

    def logs(self) -> list[dict[str, Any]]:
        with self.lock:
            return [log for batch in self.batches for log in batch]

    def call_ids(self) -> list[str]:
        return [log["hookgate"]["call_id"] for log in self.logs()]

    def wait_for_logs(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        if not self.wait_for(lambda: len(self.logs()) >= count, timeout):
            raise AssertionError(f"received {len(self.logs())} logs within {timeout} s, "
                                 f"expected {count}")
        return self.logs()

    def error_reply(self, status: int, message: str) -> Reply:
        return Reply.json(status, {"errors": [message]})

    def respond(self, request: ReceivedRequest) -> Reply:
        if request.path != LOGS_PATH:
            return self.error_reply(404, "Not found")
        if request.headers.get("DD-API-KEY") != self.api_key:
            return self.error_reply(403, "Forbidden")
        if request.headers.get("Content-Encoding") != "gzip":
            return self.error_reply(400, "the test intake expects Content-Encoding: gzip")
        try:
            data = gzip.decompress(request.body)
        except (OSError, EOFError):
            return self.error_reply(400, "invalid gzip body")
        if len(data) > self.max_payload_bytes:
            return self.error_reply(413, "Payload too large")
        try:
            payload = json.loads(data)
        except ValueError:
            return self.error_reply(400, "invalid JSON")
        problem = validate_logs(payload)
        if problem is not None:
            return self.error_reply(400, problem)
        if len(payload) > self.max_entries:
            return self.error_reply(413, "too many logs in one request")
        if any(len(json.dumps(log).encode()) > self.max_entry_bytes for log in payload):
            return self.error_reply(413, "a log exceeds the size limit")

        with self.lock:
            self.batches.append(payload)
            self.raw_payloads.append(data)
            self.request_headers.append(dict(request.headers))
        return Reply.json(202, {})


def validate_logs(payload: Any) -> str | None:
    """Return why a decoded payload is not a valid array of logs, or None."""
    if not isinstance(payload, list):
        return "expected a JSON array of logs"
    for index, log in enumerate(payload):
        if not isinstance(log, dict):
            return f"log {index}: expected an object"
        for key in STRING_ATTRIBUTES:
            if key in log and not isinstance(log[key], str):
                return f"log {index}: {key} must be a string"
    return None


@pytest.fixture
def make_intake(start_receiver: Callable[..., Any]) -> Callable[..., IntakeReceiver]:
    """A factory of running stand-in intakes (`make_intake(port=0, **options)`), all
    stopped after the test. Pass the port of a stopped one to bring the backend back."""
    return functools.partial(start_receiver, IntakeReceiver)


@pytest.fixture
def intake(make_intake: Callable[..., IntakeReceiver]) -> IntakeReceiver:
    """A running stand-in intake on a free loopback port; stopped after the test."""
    return make_intake()


@pytest.fixture
def datadog_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the DD_* variables the plugin reads, so the machine's environment cannot leak in."""
    for variable in ("DD_API_KEY", "DD_SITE", "DD_SERVICE", "DD_ENV"):
        monkeypatch.delenv(variable, raising=False)
