"""A scriptable loopback HTTP server that replaces a logging backend in tests.

A plugin's tests subclass `LoopbackReceiver` and implement `respond` with the checks
the real backend makes (authentication, schema, size limits), recording what it
accepts. The base class serves POST requests on 127.0.0.1 and lets a test:

- queue scripted responses, returned first to last before `respond` is called:
  `receiver.script.append((429, {"Retry-After": "1"}))`;
- slow every request down by `delay` seconds, or hold each request until the
  event in `gate` is set;
- `stop` it, so that connections are refused, and start it again on the same port.

A typical subclass:

    class AuditReceiver(LoopbackReceiver):
        def respond(self, request: ReceivedRequest) -> Reply:
            if request.headers.get("Authorization") != "Bearer k":
                return self.error_reply(401, "invalid key")
            with self.lock:
                self.lines.append(request.body)
            return Reply.json(202, {})

The fixture `start_receiver` of the hookgate pytest plugin starts receivers and
stops them after the test: `start_receiver(AuditReceiver, port=0, **options)`.
"""

from __future__ import annotations

import email.message
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

__all__ = ["LoopbackReceiver", "ReceivedRequest", "Reply"]

GATE_TIMEOUT = 30.0
"""Seconds a request waits for `gate` before it is processed anyway, so that a test
that never sets the gate cannot hang."""

ReceiverT = TypeVar("ReceiverT", bound="LoopbackReceiver")


@dataclass(frozen=True)
class ReceivedRequest:
    """One POST request as the receiver read it."""

    path: str
    headers: email.message.Message
    """Request headers (an `http.client.HTTPMessage`); `get` ignores the case of the name."""
    body: bytes


@dataclass(frozen=True)
class Reply:
    """The response the receiver sends."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, document: Any, headers: Mapping[str, str] | None = None) -> Reply:
        """Return a reply whose body is `document` encoded as JSON."""
        return cls(status, json.dumps(document).encode(), dict(headers or {}))


class LoopbackReceiver:
    """A threaded HTTP server on 127.0.0.1 with scripted failures; start it with `start`.

    `lock` is a condition variable: a subclass records accepted data while holding
    it, and the base class notifies it when a request arrives and after every
    response, so that `wait_for` wakes up.
    """

    def __init__(self, port: int = 0) -> None:
        self.port = port
        """The listening port; 0 until `start` picks a free one."""
        self.script: list[tuple[int, dict[str, str]]] = []
        """Statuses and headers to respond with, first to last, before `respond` runs."""
        self.delay = 0.0
        """Seconds to wait before processing each request."""
        self.gate: threading.Event | None = None
        """If set, each request waits until the event is set (at most 30 s)."""
        self.lock = threading.Condition()
        self.requests = 0
        """POST requests received, scripted ones included."""
        self.statuses: list[int] = []
        """Status of every response, in order."""
        self._server: _Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self: ReceiverT) -> ReceiverT:
        """Listen on `port` (a free one if 0) and serve in a daemon thread."""
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.receiver = self
        self._server = server
        self.port = int(server.server_address[1])
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         name=f"loopback-receiver-{self.port}", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket, so connections are refused. Safe to repeat.

        Sets `gate` first, so that held requests end.
        """
        server, self._server = self._server, None
        if server is None:
            return
        if self.gate is not None:
            self.gate.set()
        server.shutdown()
        server.server_close()

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until `condition()` is true, checking it at every request and response.

        `condition` runs with `lock` held (it is reentrant). Returns False if it is
        still false after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        with self.lock:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.lock.wait(remaining)
        return True

    def respond(self, request: ReceivedRequest) -> Reply:
        """Check `request` as the backend would, record what it accepts, and return the reply.

        Runs on the server's request thread, so shared state must be changed with
        `lock` held.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement respond")

    def error_reply(self, status: int, message: str) -> Reply:
        """Return an error reply in the backend's format; scripted responses use it too."""
        return Reply.json(status, {"message": message})

    def _serve(self, request: ReceivedRequest) -> Reply:
        with self.lock:
            self.requests += 1
            scripted = self.script.pop(0) if self.script else None
            self.lock.notify_all()

        if self.gate is not None:
            self.gate.wait(GATE_TIMEOUT)
        if self.delay:
            time.sleep(self.delay)
        if scripted is not None:
            status, headers = scripted
            reply = self.error_reply(status, "scripted")
            reply = replace(reply, headers={**reply.headers, **headers})
        else:
            reply = self.respond(request)

        with self.lock:
            self.statuses.append(reply.status)
            self.lock.notify_all()
        return reply


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Lets a test start a receiver again on the port of one it stopped.
    allow_reuse_address = True
    receiver: LoopbackReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        reply = self.server.receiver._serve(ReceivedRequest(self.path, self.headers, body))

        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client timed out and closed the connection, as tests of retries make
            # it do, so there is no one left to respond to.
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass
