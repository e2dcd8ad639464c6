"""Tests of the batching sender: batching, retries, 413 splitting, credentials, flush."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hookgate.batching import (
    BatchSender,
    FlushIncomplete,
    HttpResponse,
    SendResult,
    http_post,
    parse_retry_after,
    redact_url,
)


class FakeBackend:
    """A send function that records every batch and returns statuses from a script."""

    def __init__(self, *script: int | SendResult | BaseException,
                 default: int | SendResult = 202,
                 answer: Callable[[Sequence[bytes]], int | SendResult] | None = None) -> None:
        self.script = list(script)
        self.default = default
        self.answer = answer
        self.batches: list[list[bytes]] = []
        self.attempt_times: list[float] = []
        self.timeouts: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, entries: Sequence[bytes], timeout: float) -> int | SendResult:
        with self._lock:
            self.batches.append(list(entries))
            self.attempt_times.append(time.monotonic())
            self.timeouts.append(timeout)
            step = self.script.pop(0) if self.script else None
        if isinstance(step, BaseException):
            raise step
        if step is not None:
            return step
        if self.answer is not None:
            return self.answer(entries)
        return self.default

    @property
    def attempts(self) -> int:
        with self._lock:
            return len(self.batches)


def make_sender(send: Callable[..., int | SendResult], **options: object) -> BatchSender:
    settings: dict[str, object] = {"flush_interval": 30.0, "base_delay": 0.01, "max_delay": 0.05}
    settings.update(options)
    return BatchSender("test", send, **settings)  # type: ignore[arg-type]


def entries(count: int, size: int = 10) -> list[bytes]:
    return [str(index).rjust(size, "x").encode() for index in range(count)]


def submit_all(sender: BatchSender, data: list[bytes]) -> list[bool]:
    return [sender.submit(item, f"call-{index}") for index, item in enumerate(data)]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the timeout")
        time.sleep(0.01)


def assert_balanced(sender: BatchSender) -> None:
    """Every submitted entry is sent, failed, dropped or still queued: none is lost."""
    health = sender.health()
    accounted = (health["sent"] + health["failed"] + health["dropped"] + health["queued"]
                 + health["in_flight"])
    assert accounted == health["submitted"], health


@pytest.fixture
def closing() -> Iterator[list[BatchSender]]:
    senders: list[BatchSender] = []
    yield senders
    for sender in senders:
        sender.close(1.0)


# Batching


def test_batches_split_by_entry_count(closing: list[BatchSender]) -> None:
    backend = FakeBackend()
    sender = make_sender(backend, max_batch_entries=4)
    closing.append(sender)

    submit_all(sender, entries(10))
    report = sender.flush(5.0)

    assert report.complete
    assert [len(batch) for batch in backend.batches] == [4, 4, 2]
    assert sender.counters.sent == 10
    assert sender.counters.batches == 3


def test_batches_respect_byte_limit(closing: list[BatchSender]) -> None:
    backend = FakeBackend()
    sender = make_sender(backend, max_batch_bytes=250, payload_overhead=2, separator_bytes=1)
    closing.append(sender)

    submit_all(sender, entries(7, size=100))
    sender.flush(5.0)

    sizes = [2 + sum(len(item) for item in batch) + len(batch) - 1 for batch in backend.batches]
    assert max(sizes) <= 250
    assert sum(len(batch) for batch in backend.batches) == 7


def test_batch_sent_after_flush_interval(closing: list[BatchSender]) -> None:
    backend = FakeBackend()
    sender = make_sender(backend, flush_interval=0.05)
    closing.append(sender)

    sender.submit(b"one", "call-1")
    wait_until(lambda: sender.counters.sent == 1)

    assert backend.batches == [[b"one"]]


def test_full_batch_sent_before_interval(closing: list[BatchSender]) -> None:
    backend = FakeBackend()
    sender = make_sender(backend, max_batch_entries=5, flush_interval=60.0)
    closing.append(sender)

    submit_all(sender, entries(5))
    wait_until(lambda: sender.counters.sent == 5)

    assert len(backend.batches) == 1


# Retries


def test_retry_then_success(closing: list[BatchSender]) -> None:
    backend = FakeBackend(503, 500, 202)
    sender = make_sender(backend)
    closing.append(sender)

    submit_all(sender, entries(3))
    report = sender.flush(5.0)

    assert report.complete
    assert backend.attempts == 3
    assert sender.counters.sent == 3
    assert sender.counters.retried == 2
    assert sender.counters.failed == 0
    assert backend.batches[0] == backend.batches[2]


def test_retry_on_connection_error(closing: list[BatchSender]) -> None:
    backend = FakeBackend(ConnectionRefusedError(111, "Connection refused"), 202)
    sender = make_sender(backend)
    closing.append(sender)

    submit_all(sender, entries(2))
    sender.flush(5.0)

    assert sender.counters.sent == 2
    assert sender.counters.retried == 1
    assert sender.health()["backend"] == "ok"


def test_retry_after_is_honoured(closing: list[BatchSender]) -> None:
    backend = FakeBackend(SendResult(429, retry_after=0.3), 202)
    sender = make_sender(backend, max_delay=1.0)
    closing.append(sender)

    submit_all(sender, entries(1))
    sender.flush(5.0)

    assert backend.attempts == 2
    assert backend.attempt_times[1] - backend.attempt_times[0] >= 0.3
    assert sender.counters.sent == 1


def test_retry_after_capped_by_max_delay(closing: list[BatchSender]) -> None:
    backend = FakeBackend(SendResult(429, retry_after=3600), 202)
    sender = make_sender(backend, max_delay=0.1)
    closing.append(sender)

    submit_all(sender, entries(1))
    report = sender.flush(5.0)

    assert report.complete
    assert backend.attempt_times[1] - backend.attempt_times[0] < 1.0


def test_attempts_are_bounded(closing: list[BatchSender]) -> None:
    backend = FakeBackend(default=503)
    sender = make_sender(backend, max_attempts=3)
    closing.append(sender)

    submit_all(sender, entries(4))
    report = sender.flush(5.0)

    assert backend.attempts == 3
    assert sender.counters.failed == 4
    assert sender.counters.retried == 2
    assert report.unsent == 4
    assert sender.health()["last_status"] == 503
    assert_balanced(sender)


@pytest.mark.parametrize("status", [400, 404, 422, 302])
def test_no_retry_on_other_status(status: int, closing: list[BatchSender]) -> None:
    backend = FakeBackend(default=status)
    sender = make_sender(backend)
    closing.append(sender)

    submit_all(sender, entries(3))
    sender.flush(5.0)

    assert backend.attempts == 1
    assert sender.counters.failed == 3
    assert sender.counters.retried == 0
    assert sender.health()["last_status"] == status


def test_send_function_bug_not_retried(closing: list[BatchSender]) -> None:
    backend = FakeBackend(TypeError("bad payload"), 202)
    sender = make_sender(backend, max_batch_entries=2)
    closing.append(sender)

    submit_all(sender, entries(4))
    sender.flush(5.0)

    assert backend.attempts == 2
    assert sender.counters.failed == 2
    assert sender.counters.sent == 2
    assert "TypeError" in (sender.counters.last_error or "")


# Credentials


@pytest.mark.parametrize("status", [401, 403])
def test_credentials_rejected(status: int, closing: list[BatchSender]) -> None:
    backend = FakeBackend(default=status)
    sender = make_sender(backend, max_batch_entries=2)
    closing.append(sender)

    submit_all(sender, entries(4))
    sender.flush(5.0)

    assert backend.attempts == 2
    assert sender.counters.failed == 4
    assert sender.counters.retried == 0
    assert sender.health()["backend"] == "credentials rejected"


def test_credentials_recover_after_success(closing: list[BatchSender]) -> None:
    backend = FakeBackend(403, 202)
    sender = make_sender(backend, max_batch_entries=1)
    closing.append(sender)

    submit_all(sender, entries(2))
    sender.flush(5.0)

    assert sender.counters.failed == 1
    assert sender.counters.sent == 1
    assert sender.health()["backend"] == "ok"


# 413


def test_split_on_413(closing: list[BatchSender]) -> None:
    def reject_large(batch: Sequence[bytes]) -> int:
        return 413 if len(batch) > 2 else 202

    backend = FakeBackend(answer=reject_large)
    sender = make_sender(backend, max_batch_entries=8)
    closing.append(sender)

    submit_all(sender, entries(8))
    report = sender.flush(5.0)

    assert report.complete
    assert sender.counters.sent == 8
    assert sender.counters.splits == 3
    accepted = [batch for batch in backend.batches if len(batch) <= 2]
    assert sorted(item for batch in accepted for item in batch) == sorted(entries(8))


def test_single_entry_too_large_dropped(closing: list[BatchSender]) -> None:
    def reject_big_entry(batch: Sequence[bytes]) -> int:
        return 413 if any(len(item) > 50 for item in batch) else 202

    backend = FakeBackend(answer=reject_big_entry)
    sender = make_sender(backend)
    closing.append(sender)

    data = [b"a" * 10, b"b" * 100, b"c" * 10, b"d" * 10]
    submit_all(sender, data)
    sender.flush(5.0)

    assert sender.counters.sent == 3
    assert sender.counters.oversized == 1
    assert sender.counters.dropped == 1
    assert backend.attempts < 10
    assert_balanced(sender)


def test_entry_larger_than_batch_limit_dropped(closing: list[BatchSender]) -> None:
    backend = FakeBackend()
    sender = make_sender(backend, max_batch_bytes=100)
    closing.append(sender)

    accepted = sender.submit(b"x" * 200, "call-big")

    assert accepted is False
    assert sender.counters.oversized == 1
    assert sender.counters.dropped == 1
    assert backend.attempts == 0


def test_entry_over_entry_limit_dropped(closing: list[BatchSender]) -> None:
    backend = FakeBackend()
    sender = make_sender(backend, max_batch_bytes=1000, max_entry_bytes=50)
    closing.append(sender)

    accepted = [sender.submit(b"x" * 50, "call-fits"), sender.submit(b"x" * 51, "call-big")]
    sender.flush(5.0)

    assert accepted == [True, False]
    assert sender.counters.oversized == 1
    assert backend.batches == [[b"x" * 50]]


# Buffer


def test_full_buffer_drops_and_counts(closing: list[BatchSender]) -> None:
    backend = FakeBackend()
    sender = make_sender(backend, max_queue_entries=5, max_batch_entries=100)
    closing.append(sender)

    accepted = submit_all(sender, entries(12))

    assert accepted == [True] * 5 + [False] * 7
    assert sender.counters.dropped == 7
    assert sender.queued == 5
    assert_balanced(sender)


def test_buffer_bounded_in_bytes(closing: list[BatchSender]) -> None:
    backend = FakeBackend()
    sender = make_sender(backend, max_queue_bytes=1000, max_batch_entries=100)
    closing.append(sender)

    submit_all(sender, entries(30, size=100))

    assert sender.health()["queued_bytes"] <= 1000
    assert sender.counters.dropped == 20


# Flush and close


def test_flush_deadline_reports_unsent(closing: list[BatchSender]) -> None:
    backend = FakeBackend(default=503)
    sender = make_sender(backend, base_delay=0.2, max_delay=0.2, max_attempts=100)
    closing.append(sender)

    submit_all(sender, entries(5))
    started = time.monotonic()
    report = sender.flush(0.5)
    elapsed = time.monotonic() - started

    assert elapsed < 2.0
    assert not report.complete
    assert sorted(report.unsent_keys) == [f"call-{index}" for index in range(5)]
    assert report.sent == 0


def test_flush_shortens_retry_delay(closing: list[BatchSender]) -> None:
    backend = FakeBackend(503, 202)
    sender = make_sender(backend, base_delay=20.0, max_delay=20.0)
    closing.append(sender)

    submit_all(sender, entries(2))
    report = sender.flush(1.0)

    assert report.complete
    assert backend.attempts == 2


def test_flush_keeps_retry_after_delay(closing: list[BatchSender]) -> None:
    backend = FakeBackend(SendResult(429, retry_after=20.0), 202)
    sender = make_sender(backend, max_delay=30.0)
    closing.append(sender)

    submit_all(sender, entries(2))
    report = sender.flush(0.5)

    assert not report.complete
    assert backend.attempts == 1
    with pytest.raises(FlushIncomplete, match="2 entries not sent"):
        report.raise_if_incomplete("test")


def test_flush_limits_request_timeout(closing: list[BatchSender]) -> None:
    backend = FakeBackend()
    sender = make_sender(backend, request_timeout=30.0)
    closing.append(sender)

    submit_all(sender, entries(1))
    sender.flush(2.0)

    assert backend.timeouts[0] <= 2.0


def test_flush_with_slow_send_reports_in_flight(closing: list[BatchSender]) -> None:
    release = threading.Event()

    def slow(batch: Sequence[bytes]) -> int:
        release.wait(5)
        return 202

    backend = FakeBackend(answer=slow)
    sender = make_sender(backend)
    closing.append(sender)

    submit_all(sender, entries(3))
    report = sender.flush(0.2)
    release.set()

    assert report.in_flight == 3
    assert sorted(report.in_flight_keys) == ["call-0", "call-1", "call-2"]
    assert not report.complete
    wait_until(lambda: sender.counters.sent == 3)


def test_close_drops_leftovers_and_later_entries() -> None:
    backend = FakeBackend(default=503)
    sender = make_sender(backend, base_delay=1.0, max_delay=1.0, max_batch_entries=2,
                         max_attempts=50)

    submit_all(sender, entries(6))
    report = sender.close(0.3)
    accepted_after = sender.submit(b"late", "call-late")

    assert not report.complete
    assert accepted_after is False
    assert sender.counters.sent == 0
    assert sender.counters.failed + sender.counters.dropped == 7
    assert_balanced(sender)


def test_flush_sends_everything_queued(closing: list[BatchSender]) -> None:
    backend = FakeBackend()
    sender = make_sender(backend, flush_interval=3600.0, max_batch_entries=1000)
    closing.append(sender)

    submit_all(sender, entries(50))
    report = sender.flush(5.0)

    assert report.complete
    assert report.sent == 50
    assert sum(len(batch) for batch in backend.batches) == 50


def test_rejected_entries_counted_failed(closing: list[BatchSender]) -> None:
    backend = FakeBackend(SendResult(207, rejected=(0, 2), detail="2 invalid"))
    sender = make_sender(backend)
    closing.append(sender)

    submit_all(sender, entries(4))
    sender.flush(5.0)

    assert sender.counters.sent == 2
    assert sender.counters.failed == 2
    assert backend.attempts == 1


def test_invalid_options_rejected() -> None:
    with pytest.raises(ValueError, match="max_batch_entries"):
        BatchSender("test", FakeBackend(), max_batch_entries=0)
    with pytest.raises(ValueError, match="flush_interval"):
        BatchSender("test", FakeBackend(), flush_interval=0)


# Retry-After and URLs


@pytest.mark.parametrize(("value", "expected"), [
    ("7", 7.0),
    (" 0 ", 0.0),
    ("", None),
    (None, None),
    ("soon", None),
    ("-3", None),
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    delay = parse_retry_after(formatdate(time.time() + 30, usegmt=True))

    assert delay is not None
    assert 25 <= delay <= 31


def test_redact_url_removes_credentials() -> None:
    assert redact_url("https://user:secret@example.test:8443/api?key=abc") == \
        "https://example.test:8443/api"


# A real HTTP server on loopback


class Receiver(ThreadingHTTPServer):
    """A loopback server that responds to POSTs with scripted statuses and records bodies."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), ReceiverHandler)
        self.script: list[tuple[int, dict[str, str]]] = []
        self.bodies: list[bytes] = []
        self.headers_seen: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/intake"


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status, headers = self.server.script.pop(0) if self.server.script else (200, {})
        if status < 300:
            self.server.bodies.append(body)
            self.server.headers_seen.append(dict(self.headers))
        reply = json.dumps({"status": status}).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_http_post_returns_status_and_body(receiver: Receiver) -> None:
    response = http_post(receiver.url, b"[1]", {"Content-Type": "application/json"}, 5.0)

    assert response.status == 200
    assert json.loads(response.body) == {"status": 200}
    assert receiver.bodies == [b"[1]"]


def test_http_post_reads_retry_after(receiver: Receiver) -> None:
    receiver.script.append((429, {"Retry-After": "4"}))

    response = http_post(receiver.url, b"[]", {}, 5.0)

    assert response.status == 429
    assert response.retry_after == 4.0
    assert response.to_result().detail == '{"status": 429}'


def test_error_detail_hides_secrets() -> None:
    response = HttpResponse(401, b'{"message": "bad key sk-123 for user"}')

    result = response.to_result(secrets=("sk-123", ""))

    assert result.detail == '{"message": "bad key *** for user"}'


def test_http_post_does_not_follow_redirect(receiver: Receiver) -> None:
    receiver.script.append((307, {"Location": "http://127.0.0.1:9/elsewhere"}))

    response = http_post(receiver.url, b"[]", {"Authorization": "Basic abc"}, 5.0)

    assert response.status == 307


def test_http_post_connection_refused_raises() -> None:
    with pytest.raises(OSError):
        http_post(f"http://127.0.0.1:{free_port()}/intake", b"[]", {}, 2.0)


def test_sender_over_http_retries_then_delivers(receiver: Receiver,
                                                closing: list[BatchSender]) -> None:
    receiver.script.extend([(503, {}), (429, {"Retry-After": "0"})])

    def send(batch: Sequence[bytes], timeout: float) -> SendResult:
        body = b"[" + b",".join(batch) + b"]"
        return http_post(receiver.url, body, {"Content-Type": "application/json"},
                         timeout).to_result()

    sender = make_sender(send)
    closing.append(sender)
    for index in range(5):
        sender.submit(json.dumps({"n": index}).encode(), f"call-{index}")
    report = sender.flush(5.0)

    assert report.complete
    assert sender.counters.retried == 2
    assert [json.loads(body) for body in receiver.bodies] == [[{"n": n} for n in range(5)]]


def test_sender_recovers_after_backend_down(closing: list[BatchSender]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/intake"

    def send(batch: Sequence[bytes], timeout: float) -> SendResult:
        return http_post(url, b"[" + b",".join(batch) + b"]", {}, timeout).to_result()

    sender = make_sender(send, max_attempts=2, max_queue_entries=20, max_batch_entries=10,
                         flush_interval=0.02)
    closing.append(sender)
    submit_all(sender, entries(40))
    wait_until(lambda: sender.counters.failed + sender.counters.dropped == 40)
    assert sender.health()["backend"] == "unreachable"

    server = Receiver(port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        later = [json.dumps({"after": index}).encode() for index in range(5)]
        for index, item in enumerate(later):
            sender.submit(item, f"after-{index}")
        report = sender.flush(5.0)
    finally:
        server.shutdown()
        server.server_close()

    received = [item for body in server.bodies for item in json.loads(body)]
    assert report.complete
    assert received == [{"after": index} for index in range(5)]
    assert sender.counters.sent == 5
    assert_balanced(sender)
