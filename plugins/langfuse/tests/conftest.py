"""A loopback stand-in for a Langfuse server's ingestion API, and fixtures around it.

It checks what Langfuse checks on `POST /api/public/ingestion`. Authentication is
HTTP Basic with the project's public and secret key (401 otherwise). A request has
a size limit (413) and a JSON body with a `batch` list (400 otherwise). Each
event's envelope and body are validated, with per-event errors in a 207 response.
Like Langfuse, it skips an event whose envelope id it has already processed, and
counts such repeats. `LoopbackReceiver` lets tests script 429 and 5xx responses,
slow it down, hold requests, or stop it to refuse connections.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from hookgate.testing.receiver import LoopbackReceiver, ReceivedRequest, Reply

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


class LangfuseReceiver(LoopbackReceiver):
    """The stand-in server. Start it with `start()`; every attribute is thread-safe to read
    after `wait_for`."""

    def __init__(self, port: int = 0, *, public_key: str = PUBLIC_KEY,
                 secret_key: str = SECRET_KEY, max_body_bytes: int = 3_500_000) -> None:
        super().__init__(port)
        self.public_key = public_key
        self.secret_key = secret_key
        self.max_body_bytes = max_body_bytes
        self.reject_prefixes: tuple[str, ...] = ()
        """Envelope ids starting with one of these get a per-event error in the 207."""
        self.raw_bodies: list[bytes] = []
        self.request_headers: list[dict[str, str]] = []
        self.events: dict[str, dict[str, Any]] = {}
        """Processed events by envelope id."""
        self.repeats = 0
        """Events skipped because their envelope id was already processed."""

    @property
    def host(self) -> str:
        return self.base_url

    def bodies(self, event_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [event["body"] for event in self.events.values()
                    if event["type"] == event_type]

    def traces(self) -> dict[str, dict[str, Any]]:
        return {body["id"]: body for body in self.bodies("trace-create")}

    def generations(self) -> dict[str, dict[str, Any]]:
        return {body["traceId"]: body for body in self.bodies("generation-create")}

    def wait_for_traces(self, count: int, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
        if not self.wait_for(lambda: len(self.bodies("trace-create")) >= count, timeout):
            raise AssertionError(f"received {len(self.traces())} traces within "
                                 f"{timeout} s, expected {count}")
        return self.traces()

    def respond(self, request: ReceivedRequest) -> Reply:
        if request.path != INGESTION_PATH:
            return self.error_reply(404, f"no route {request.path}")
        if not self._authorized(request):
            return self.error_reply(401, "Invalid credentials. Confirm that you've configured "
                                    "the correct host.")
        if len(request.body) > self.max_body_bytes:
            return self.error_reply(413, "Request Entity Too Large")
        try:
            payload = json.loads(request.body)
        except ValueError:
            return self.error_reply(400, "Invalid JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("batch"), list):
            return self.error_reply(400, "Invalid request data: batch is required")

        successes, errors = [], []
        with self.lock:
            self.raw_bodies.append(request.body)
            self.request_headers.append(dict(request.headers))
            for event in payload["batch"]:
                problem = validate_event(event)
                if problem is None and str(event["id"]).startswith(self.reject_prefixes or
                                                                   ("\0",)):
                    problem = "rejected by the test"
                if problem is not None:
                    errors.append({"id": str(event.get("id", "")) if isinstance(event, dict)
                                   else "", "status": 400, "message": "Invalid request data",
                                   "error": problem})
                    continue
                if event["id"] in self.events:
                    self.repeats += 1
                else:
                    self.events[event["id"]] = event
                successes.append({"id": event["id"], "status": 201})
        return Reply.json(207, {"successes": successes, "errors": errors})

    def _authorized(self, request: ReceivedRequest) -> bool:
        expected = base64.b64encode(f"{self.public_key}:{self.secret_key}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}"


@pytest.fixture
def make_receiver(start_receiver: Callable[..., Any]) -> Callable[..., LangfuseReceiver]:
    """A factory of running stand-in servers (`make_receiver(port=0, **options)`), all
    stopped after the test. Pass the port of a stopped one to bring the backend back."""
    return functools.partial(start_receiver, LangfuseReceiver)


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
