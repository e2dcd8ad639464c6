"""A loopback stand-in for a Langfuse server's ingestion API, and fixtures around it.

It checks what Langfuse checks on `POST /api/public/ingestion`. Authentication is
HTTP Basic with the project's public and secret key (401 otherwise). A request has
a size limit (413) and a JSON body with a `batch` list (400 otherwise). Each
event's envelope and body are validated, with per-event errors in a 207 response.
Like Langfuse, it skips an event whose envelope id it has already processed, and
counts such repeats. Tests can script 429 and 5xx responses, slow it down, or stop
it to refuse connections.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

PUBLIC_KEY = "pk-lf-test-0123456789"
SECRET_KEY = "sk-lf-test-secret-9876543210"
INGESTION_PATH = "/api/public/ingestion"

EVENT_TYPES = frozenset({"trace-create", "generation-create", "generation-update",
                         "span-create", "span-update", "event-create", "score-create",
                         "sdk-log", "observation-create", "observation-update"})
LEVELS = frozenset({"DEBUG", "DEFAULT", "WARNING", "ERROR"})


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def validate_event(event: Any) -> str | None:
    """Return why one ingestion event is invalid, or None if it is valid."""
    if not isinstance(event, dict):
        return "event is not an object"
    if not isinstance(event.get("id"), str) or not event["id"]:
        return "id: expected a non-empty string"
    if not _is_timestamp(event.get("timestamp")):
        return "timestamp: expected an ISO 8601 date-time"
    if event.get("type") not in EVENT_TYPES:
        return f"type: unknown event type {event.get('type')!r}"
    body = event.get("body")
    if not isinstance(body, dict):
        return "body: expected an object"
    if event["type"] == "trace-create":
        if not isinstance(body.get("id"), str):
            return "body.id: expected a string"
        if "tags" in body and not all(isinstance(tag, str) for tag in body["tags"]):
            return "body.tags: expected a list of strings"
    if event["type"] == "generation-create":
        if not isinstance(body.get("traceId"), str) or not isinstance(body.get("id"), str):
            return "body.id and body.traceId: expected strings"
        for key in ("startTime", "endTime", "completionStartTime"):
            if key in body and not _is_timestamp(body[key]):
                return f"body.{key}: expected an ISO 8601 date-time"
        if "level" in body and body["level"] not in LEVELS:
            return f"body.level: invalid value {body['level']!r}"
        usage = body.get("usage")
        if usage is not None and not all(isinstance(usage.get(key, 0), int)
                                         for key in ("input", "output", "total")):
            return "body.usage: token counts must be integers"
        parameters = body.get("modelParameters") or {}
        if not all(isinstance(value, (str, int, float, bool)) or value is None
                   for value in parameters.values()):
            return "body.modelParameters: values must be scalars"
    return None


class LangfuseReceiver(ThreadingHTTPServer):
    """The stand-in server. Start it with `start()`; every attribute is thread-safe to read
    after `wait_for`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0, *, public_key: str = PUBLIC_KEY,
                 secret_key: str = SECRET_KEY, max_body_bytes: int = 3_500_000) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.public_key = public_key
        self.secret_key = secret_key
        self.max_body_bytes = max_body_bytes
        self.script: list[tuple[int, dict[str, str]]] = []
        """Responses to return, first to last, before any normal processing."""
        self.delay = 0.0
        """Seconds to wait before processing each request."""
        self.gate: threading.Event | None = None
        """If set, each request waits until the event is set."""
        self.reject_prefixes: tuple[str, ...] = ()
        """Envelope ids starting with one of these get a per-event error in the 207."""
        self.lock = threading.Condition()
        self.requests = 0
        self.statuses: list[int] = []
        self.raw_bodies: list[bytes] = []
        self.request_headers: list[dict[str, str]] = []
        self.events: dict[str, dict[str, Any]] = {}
        """Processed events by envelope id."""
        self.repeats = 0
        """Events skipped because their envelope id was already processed."""
        self._running = False

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LangfuseReceiver:
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

    def bodies(self, event_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [event["body"] for event in self.events.values()
                    if event["type"] == event_type]

    def traces(self) -> dict[str, dict[str, Any]]:
        return {body["id"]: body for body in self.bodies("trace-create")}

    def generations(self) -> dict[str, dict[str, Any]]:
        return {body["traceId"]: body for body in self.bodies("generation-create")}

    def wait_for_traces(self, count: int, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len([e for e in self.events.values() if e["type"] == "trace-create"]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"received {len(self.traces())} traces within "
                                         f"{timeout} s, expected {count}")
                self.lock.wait(remaining)
        return self.traces()


class _Handler(BaseHTTPRequestHandler):
    server: LangfuseReceiver
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        with server.lock:
            server.requests += 1
            scripted = server.script.pop(0) if server.script else None

        if server.gate is not None:
            server.gate.wait(30)
        if server.delay:
            time.sleep(server.delay)
        if scripted is not None:
            self._reply(scripted[0], {"message": "scripted"}, scripted[1])
            return
        if self.path != INGESTION_PATH:
            self._reply(404, {"message": f"no route {self.path}"})
            return
        if not self._authorized():
            self._reply(401, {"message": "Invalid credentials. Confirm that you've configured "
                              "the correct host."})
            return
        if length > server.max_body_bytes:
            self._reply(413, {"message": "Request Entity Too Large"})
            return
        try:
            payload = json.loads(body)
        except ValueError:
            self._reply(400, {"message": "Invalid JSON"})
            return
        if not isinstance(payload, dict) or not isinstance(payload.get("batch"), list):
            self._reply(400, {"message": "Invalid request data: batch is required"})
            return

        successes, errors = [], []
        with server.lock:
            server.raw_bodies.append(body)
            server.request_headers.append(dict(self.headers))
            for event in payload["batch"]:
                problem = validate_event(event)
                if problem is None and str(event["id"]).startswith(server.reject_prefixes or
                                                                   ("\0",)):
                    problem = "rejected by the test"
                if problem is not None:
                    errors.append({"id": str(event.get("id", "")) if isinstance(event, dict)
                                   else "", "status": 400, "message": "Invalid request data",
                                   "error": problem})
                    continue
                if event["id"] in server.events:
                    server.repeats += 1
                else:
                    server.events[event["id"]] = event
                successes.append({"id": event["id"], "status": 201})
            server.lock.notify_all()
        self._reply(207, {"successes": successes, "errors": errors})

    def _authorized(self) -> bool:
        expected = base64.b64encode(
            f"{self.server.public_key}:{self.server.secret_key}".encode()).decode()
        return self.headers.get("Authorization") == f"Basic {expected}"

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
def make_receiver() -> Iterator[Callable[..., LangfuseReceiver]]:
    """A factory of running stand-in servers (`make_receiver(port=0, **options)`), all
    stopped after the test. Pass the port of a stopped one to bring the backend back."""
    receivers: list[LangfuseReceiver] = []

    def make(port: int = 0, **options: Any) -> LangfuseReceiver:
        receiver = LangfuseReceiver(port, **options).start()
        receivers.append(receiver)
        return receiver

    yield make
    for receiver in receivers:
        receiver.stop()


@pytest.fixture
def langfuse_receiver(make_receiver: Callable[..., LangfuseReceiver]) -> LangfuseReceiver:
    """A running stand-in Langfuse server on a free loopback port; stopped after the test."""
    return make_receiver()


@pytest.fixture
def langfuse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every LANGFUSE_* variable, so the machine's environment cannot leak in."""
    for variable in ("LANGFUSE_HOST", "LANGFUSE_BASE_URL", "LANGFUSE_PUBLIC_KEY",
                     "LANGFUSE_SECRET_KEY", "LANGFUSE_TRACING_ENVIRONMENT", "LANGFUSE_RELEASE"):
        monkeypatch.delenv(variable, raising=False)
