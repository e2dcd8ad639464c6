"""A loopback stand-in for the Datadog Logs intake v2, and fixtures around it.

It checks what the intake checks on `POST /api/v2/logs`. The `DD-API-KEY` header
must hold the right key (403 otherwise, as Datadog returns for an invalid key). The
body must be gzip-compressed with `Content-Encoding: gzip`, which the plugin always
sends and this server requires, and must be a JSON array of log objects whose
reserved attributes are strings (400 otherwise). The
documented limits give 413: more than 1,000 logs, more than 5 MB before compression,
or one log over 1 MB. The real intake truncates such a log and accepts it, so here
the check is stricter. Tests can script 429 and 5xx responses, slow it down, or stop
it to refuse connections.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

API_KEY = "dd-test-api-key-0123456789abcdef"
LOGS_PATH = "/api/v2/logs"
STRING_ATTRIBUTES = ("ddsource", "ddtags", "hostname", "service", "message", "status")


class IntakeReceiver(ThreadingHTTPServer):
    """The stand-in intake; start it with `start()`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0, *, api_key: str = API_KEY,
                 max_entries: int = 1000, max_payload_bytes: int = 5_000_000,
                 max_entry_bytes: int = 1_000_000) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.api_key = api_key
        self.max_entries = max_entries
        self.max_payload_bytes = max_payload_bytes
        self.max_entry_bytes = max_entry_bytes
        self.script: list[tuple[int, dict[str, str]]] = []
        """Responses to return, first to last, before any normal processing."""
        self.delay = 0.0
        self.gate: threading.Event | None = None
        """If set, each request waits until the event is set."""
        self.lock = threading.Condition()
        self.requests = 0
        self.statuses: list[int] = []
        self.batches: list[list[dict[str, Any]]] = []
        """Accepted batches, decoded."""
        self.raw_payloads: list[bytes] = []
        """Accepted request bodies after decompression."""
        self.request_headers: list[dict[str, str]] = []
        self._running = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{LOGS_PATH}"

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> IntakeReceiver:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self._running = True
        return self

    def stop(self) -> None:
        """Stop serving and close the socket, so connections are refused. Safe to repeat."""
        if not self._running:
            return
        self._running = False
        if self.gate is not None:
            self.gate.set()
        self.shutdown()
        self.server_close()

    def logs(self) -> list[dict[str, Any]]:
        with self.lock:
            return [log for batch in self.batches for log in batch]

    def call_ids(self) -> list[str]:
        return [log["hookgate"]["call_id"] for log in self.logs()]

    def wait_for_logs(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while sum(len(batch) for batch in self.batches) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"received {len(self.logs())} logs within {timeout} s, "
                                         f"expected {count}")
                self.lock.wait(remaining)
        return self.logs()


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


class _Handler(BaseHTTPRequestHandler):
    server: IntakeReceiver
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        server = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with server.lock:
            server.requests += 1
            scripted = server.script.pop(0) if server.script else None

        if server.gate is not None:
            server.gate.wait(30)
        if server.delay:
            time.sleep(server.delay)
        if scripted is not None:
            self._reply(scripted[0], {"errors": ["scripted"]}, scripted[1])
            return
        if self.path != LOGS_PATH:
            self._reply(404, {"errors": ["Not found"]})
            return
        if self.headers.get("DD-API-KEY") != server.api_key:
            self._reply(403, {"errors": ["Forbidden"]})
            return
        if self.headers.get("Content-Encoding") != "gzip":
            self._reply(400, {"errors": ["the test intake expects Content-Encoding: gzip"]})
            return
        try:
            data = gzip.decompress(body)
        except (OSError, EOFError):
            self._reply(400, {"errors": ["invalid gzip body"]})
            return
        if len(data) > server.max_payload_bytes:
            self._reply(413, {"errors": ["Payload too large"]})
            return
        try:
            payload = json.loads(data)
        except ValueError:
            self._reply(400, {"errors": ["invalid JSON"]})
            return
        problem = validate_logs(payload)
        if problem is not None:
            self._reply(400, {"errors": [problem]})
            return
        if len(payload) > server.max_entries:
            self._reply(413, {"errors": ["too many logs in one request"]})
            return
        if any(len(json.dumps(log).encode()) > server.max_entry_bytes for log in payload):
            self._reply(413, {"errors": ["a log exceeds the size limit"]})
            return

        with server.lock:
            server.batches.append(payload)
            server.raw_payloads.append(data)
            server.request_headers.append(dict(self.headers))
            server.lock.notify_all()
        self._reply(202, {})

    def _reply(self, status: int, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> None:
        with self.server.lock:
            self.server.statuses.append(status)
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def make_intake() -> Iterator[Callable[..., IntakeReceiver]]:
    """A factory of running stand-in intakes (`make_intake(port=0, **options)`), all
    stopped after the test. Pass the port of a stopped one to bring the backend back."""
    receivers: list[IntakeReceiver] = []

    def make(port: int = 0, **options: Any) -> IntakeReceiver:
        receiver = IntakeReceiver(port, **options).start()
        receivers.append(receiver)
        return receiver

    yield make
    for receiver in receivers:
        receiver.stop()


@pytest.fixture
def intake(make_intake: Callable[..., IntakeReceiver]) -> IntakeReceiver:
    """A running stand-in intake on a free loopback port; stopped after the test."""
    return make_intake()


@pytest.fixture
def datadog_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the DD_* variables the plugin reads, so the machine's environment cannot leak in."""
    for variable in ("DD_API_KEY", "DD_SITE", "DD_SERVICE", "DD_ENV"):
        monkeypatch.delenv(variable, raising=False)
