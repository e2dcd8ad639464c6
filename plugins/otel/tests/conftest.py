"""A loopback OTLP/HTTP trace receiver that checks what a collector checks.

It accepts `POST /v1/traces` with `Content-Type: application/x-protobuf` (gzip or
not) and decodes the body with the opentelemetry-proto messages. It can require a
bearer token, limit the spans or bytes per request (responding 413), return a queue
of chosen statuses first, or stop listening so that connections are refused.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

PROTOBUF = "application/x-protobuf"


def decode_value(value: AnyValue) -> Any:
    """Return the Python value of an OTLP AnyValue."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(decode_value(item) for item in value.array_value.values)
    if kind is None:
        return None
    return getattr(value, kind)


@dataclass
class ReceivedSpan:
    """One span as the receiver decoded it."""

    name: str
    trace_id: str
    span_id: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str


@dataclass
class ReceivedRequest:
    """One HTTP request and the status the receiver returned."""

    path: str
    headers: dict[str, str]
    body_bytes: int
    span_count: int
    status: int


@dataclass
class OtlpReceiver:
    """A threaded OTLP/HTTP receiver on 127.0.0.1; `start` again reuses the same port."""

    token: str | None = None
    max_spans: int | None = None
    max_bytes: int | None = None
    delay: float = 0.0
    responses: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    requests: list[ReceivedRequest] = field(default_factory=list)
    spans: list[ReceivedSpan] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpReceiver:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                         name="otlp-receiver").start()
        return self

    def stop(self) -> None:
        """Close the listening socket: from now on connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.spans) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"receiver got {len(self.spans)} spans within "
                                         f"{timeout} s, expected {count}")
                self._changed.wait(remaining)
            return list(self.spans)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"receiver got {len(self.requests)} requests within "
                                         f"{timeout} s, expected {count}")
                self._changed.wait(remaining)
            return list(self.requests)

    def _handle(self, path: str, headers: dict[str, str],
                body: bytes) -> tuple[int, dict[str, str]]:
        if path != "/v1/traces":
            return 404, {}
        if headers.get("content-type") != PROTOBUF:
            return 415, {}
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {}
        if self.responses:
            return self.responses.popleft()
        if self.max_bytes is not None and len(body) > self.max_bytes:
            return 413, {}

        encoding = headers.get("content-encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = list(self._decode(request))
        if self.max_spans is not None and len(spans) > self.max_spans:
            return 413, {}
        with self._changed:
            self.spans.extend(spans)
        return 200, {}

    @staticmethod
    def _decode(request: ExportTraceServiceRequest) -> Iterator[ReceivedSpan]:
        for resource_spans in request.resource_spans:
            resource = {kv.key: decode_value(kv.value)
                        for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    yield ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        kind=span.kind,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_code=span.status.code,
                        status_message=span.status.message,
                        attributes={kv.key: decode_value(kv.value) for kv in span.attributes},
                        resource=resource,
                        scope=scope_spans.scope.name,
                    )

    @staticmethod
    def _count_spans(body: bytes, headers: dict[str, str]) -> int:
        try:
            if headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
        except Exception:
            return 0
        return sum(len(scope.spans) for resource in request.resource_spans
                   for scope in resource.scope_spans)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {key.lower(): value for key, value in self.headers.items()}
                if receiver.delay:
                    time.sleep(receiver.delay)
                status, extra = receiver._handle(self.path, headers, body)
                with receiver._changed:
                    receiver.requests.append(ReceivedRequest(
                        self.path, headers, len(body), receiver._count_spans(body, headers),
                        status))
                    receiver._changed.notify_all()

                payload = ExportTraceServiceResponse().SerializeToString() if status == 200 else b""
                self.send_response(status)
                self.send_header("Content-Type", PROTOBUF)
                self.send_header("Content-Length", str(len(payload)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A running OTLP/HTTP receiver on a free loopback port, stopped after the test."""
    server = OtlpReceiver().start()
    yield server
    server.stop()
