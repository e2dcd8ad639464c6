"""Test kit for the proxy: run a real `hookgate serve` and a fake upstream on loopback.

- `running_proxy(config, env=...)`: a context manager that writes the config as YAML
  (or uses the embedded default), starts `hookgate serve` as a subprocess on a free
  loopback port, waits for `/health/readiness` and yields a `RunningProxy`.
- `FakeOpenAIServer`: a loopback server that speaks the OpenAI wire format, records
  every request, and can respond normally, stream, fail with a status, fail in the
  middle of a stream, or hang.
- `FileRecorder`: a logger plugin that appends every hook call it receives to a JSON
  Lines file, so a test can read what a plugin inside the subprocess received.
  `write_plugin_distribution` makes it discoverable under any entry-point name.

A typical test:

    with FakeOpenAIServer() as upstream, running_proxy(config) as proxy:
        client = openai.OpenAI(api_key="sk-test", base_url=proxy.base_url)
        client.chat.completions.create(model="gpt", messages=[...])
        assert upstream.requests[-1].headers.get("authorization") == "Bearer up-key"
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from hookgate import CallEvent, hookimpl

__all__ = [
    "FakeOpenAIServer",
    "FileRecorder",
    "RecordedRequest",
    "RunningProxy",
    "free_port",
    "read_records",
    "running_proxy",
    "wait_for_records",
    "write_plugin_distribution",
]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port that is free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


# The proxy subprocess


class RunningProxy:
    """A `hookgate serve` subprocess started by `running_proxy`."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path,
                 config_path: Path | None, workdir: Path) -> None:
        self.process = process
        self.port = port
        self.base_url = f"http://{LOOPBACK}:{port}"
        self.log_path = log_path
        self.config_path = config_path
        self.workdir = workdir
        """The subprocess's working directory (a fresh temporary directory)."""

    def logs(self) -> str:
        """Return everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """Send SIGTERM, wait for the process to exit and return its exit code.

        Kills the process and raises TimeoutError if it is still running after
        `timeout` seconds.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise TimeoutError(
                f"hookgate serve did not exit within {timeout} s of SIGTERM; log:\n{self.logs()}"
            ) from None

    def kill(self) -> None:
        """Kill the process at once (SIGKILL) if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@contextlib.contextmanager
def running_proxy(config: Mapping[str, Any] | None = None, *,
                  env: Mapping[str, str] | None = None, inherit_env: bool = True,
                  args: Sequence[str] = (), startup_timeout: float = 30.0,
                  workdir: Path | None = None) -> Iterator[RunningProxy]:
    """Start `hookgate serve` on a free loopback port and stop it on exit.

    :param config: The config as a dict, written to a YAML file; None starts the
        embedded default (mock models, JSONL logger, no key).
    :param env: Environment variables for the subprocess, added to this process's
        environment unless `inherit_env` is false.
    :param args: Extra command-line arguments for `hookgate serve`.
    :param workdir: The subprocess's working directory; a new temporary directory
        by default (the embedded default writes its JSONL file there).

    Raises RuntimeError with the server's log if it exits or is not ready within
    `startup_timeout` seconds. On exit the server gets SIGTERM, then SIGKILL if it is
    still running after 10 s.
    """
    with tempfile.TemporaryDirectory(prefix="hookgate-proxy-") as temporary:
        root = Path(temporary)
        directory = workdir if workdir is not None else root
        config_path = None
        command = [sys.executable, "-m", "hookgate_proxy", "serve"]
        if config is not None:
            config_path = root / "config.yaml"
            config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False), "utf-8")
            command += ["--config", str(config_path)]
        port = free_port()
        command += ["--host", LOOPBACK, "--port", str(port), *args]

        environment = dict(os.environ) if inherit_env else {}
        environment.update(env or {})
        # Keep the child's output unbuffered so that logs() shows lines as they happen.
        environment.setdefault("PYTHONUNBUFFERED", "1")

        log_path = root / "server.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                       env=environment, cwd=directory)
        proxy = RunningProxy(process, port, log_path, config_path, directory)
        try:
            _wait_ready(proxy, startup_timeout)
            yield proxy
        finally:
            if process.poll() is None:
                try:
                    proxy.stop(10)
                except TimeoutError:
                    pass
            proxy.kill()


def _wait_ready(proxy: RunningProxy, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    url = proxy.base_url + "/health/readiness"
    while time.monotonic() < deadline:
        code = proxy.process.poll()
        if code is not None:
            raise RuntimeError(f"hookgate serve exited with code {code} during startup; "
                               f"log:\n{proxy.logs()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"hookgate serve was not ready within {timeout} s; log:\n{proxy.logs()}")


# A recording plugin that works across processes


class FileRecorder:
    """A logger plugin that appends each hook call to a JSON Lines file.

    Settings: `path`, the file to append to (required). Each line is
    `{"hook": ..., "name": ..., "event": {...}}`; `logger_setup` and `logger_flush`
    are recorded too (without an event), so a test can see the lifecycle.
    """

    def __init__(self) -> None:
        self.name: str | None = None
        self.path: Path | None = None
        self._lock = threading.Lock()

    @hookimpl
    def logger_setup(self, name: str, settings: Mapping[str, Any]) -> None:
        if "path" not in settings:
            raise ValueError(f"callback_settings.{name}.path is missing: set the file to write")
        self.name = name
        self.path = Path(settings["path"])
        self._write({"hook": "logger_setup", "name": name, "settings": dict(settings)})

    @hookimpl
    def log_success(self, event: CallEvent) -> None:
        self._write({"hook": "log_success", "name": self.name,
                     "event": event.model_dump(mode="json")})

    @hookimpl
    def log_failure(self, event: CallEvent) -> None:
        self._write({"hook": "log_failure", "name": self.name,
                     "event": event.model_dump(mode="json")})

    @hookimpl
    def logger_flush(self, timeout: float) -> None:
        self._write({"hook": "logger_flush", "name": self.name})

    def _write(self, record: Mapping[str, Any]) -> None:
        assert self.path is not None
        line = json.dumps(record, default=str) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as file:
            file.write(line)


def read_records(path: Path, hook: str | None = None) -> list[dict[str, Any]]:
    """Read what a FileRecorder wrote, optionally only the calls of one hook."""
    if not Path(path).exists():
        return []
    records = [json.loads(line) for line in Path(path).read_text("utf-8").splitlines() if line]
    return [record for record in records if hook is None or record["hook"] == hook]


def wait_for_records(path: Path, count: int, hook: str | None = None,
                     timeout: float = 10.0) -> list[dict[str, Any]]:
    """Wait until a FileRecorder file has at least `count` records (of `hook`, if given).

    Returns every matching record; raises AssertionError with what arrived on timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(path, hook)
        if len(records) >= count:
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: {len(records)} records of {hook or 'any hook'} "
                                 f"within {timeout} s, expected {count}: {records}")
        time.sleep(0.02)


def write_plugin_distribution(directory: Path, plugins: Mapping[str, str],
                              distribution: str = "hookgate-test-recorders") -> Path:
    """Write a minimal installed distribution that declares `plugins` as entry points.

    `plugins` maps an entry-point name to its target (`module:attribute`). Put
    `directory` on the subprocess's PYTHONPATH and importlib.metadata finds the
    entry points there, as if the distribution were pip-installed. Returns the
    `.dist-info` directory.
    """
    normalized = distribution.replace("-", "_")
    dist_info = Path(directory) / f"{normalized}-0.0.1.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.0.1\n", "utf-8")
    lines = ["[hookgate.callbacks]"] + [f"{name} = {target}" for name, target in plugins.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n", "utf-8")
    return dist_info


# A fake upstream that speaks the OpenAI wire format


@dataclass
class RecordedRequest:
    """One request the fake upstream received."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names lowercased; repeated headers joined with ', '."""
    body: Any


@dataclass
class FakeOpenAIServer:
    """A loopback server that responds like the OpenAI API and records each request.

    Change the attributes between requests to choose the next behaviour:
    `reply` (the assistant's text), `fail_status` and `fail_message` (respond with that
    error status), `hang` (seconds to sleep before responding), `chunk_delay` (seconds
    between stream chunks), `fail_after_chunks` (break a stream with an error event
    after that many chunks). `reset()` restores normal responses.

    Streams are sent as server-sent events with chunked encoding, one word per
    chunk, and a usage chunk when the request asks for `stream_options.include_usage`.
    """

    reply: str = "Hello from the fake upstream."
    fail_status: int | None = None
    fail_message: str = "the fake upstream failed as configured"
    hang: float = 0.0
    chunk_delay: float = 0.0
    fail_after_chunks: int | None = None
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        assert self._server is not None, "start the server first"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The `api_base` to configure: `http://127.0.0.1:<port>/v1`."""
        return f"http://{LOOPBACK}:{self.port}/v1"

    def reset(self) -> None:
        """Restore every behaviour attribute to its default and forget the requests."""
        self.reply = "Hello from the fake upstream."
        self.fail_message = "the fake upstream failed as configured"
        self.fail_status = None
        self.hang = 0.0
        self.chunk_delay = 0.0
        self.fail_after_chunks = None
        with self._lock:
            self.requests.clear()

    def start(self) -> FakeOpenAIServer:
        handler = type("Handler", (_FakeOpenAIHandler,), {"upstream": self})
        self._server = ThreadingHTTPServer((LOOPBACK, 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-openai")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


class _FakeOpenAIHandler(BaseHTTPRequestHandler):
    upstream: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # Keep test output clean; the recorded requests are the log.

    def do_GET(self) -> None:
        self._record(None)
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [
                {"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}]})
        else:
            self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error",
                                            "param": None, "code": None}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self._record(body)
        upstream = self.upstream

        if upstream.hang:
            time.sleep(upstream.hang)
        if upstream.fail_status is not None:
            self._send_json(upstream.fail_status, {"error": {
                "message": upstream.fail_message, "type": "server_error", "param": None,
                "code": None}})
            return

        body = body if isinstance(body, dict) else {}
        if self.path.rstrip("/").endswith("/embeddings"):
            self._send_embeddings(body)
        elif body.get("stream"):
            self._send_stream(body)
        else:
            self._send_json(200, self._completion(body))

    def _record(self, body: Any) -> None:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        self.upstream.record(RecordedRequest(self.command, self.path, headers, body))

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _usage(self, body: Mapping[str, Any]) -> dict[str, int]:
        prompt = sum(len(str(message.get("content", "")).split())
                     for message in body.get("messages", []) if isinstance(message, dict))
        completion = len(self.upstream.reply.split())
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def _completion(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000,
            "model": body.get("model", "fake-model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": self.upstream.reply}}],
            "usage": self._usage(body),
        }

    def _send_embeddings(self, body: Mapping[str, Any]) -> None:
        inputs = body.get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        self._send_json(200, {
            "object": "list", "model": body.get("model", "fake-model"),
            "data": [{"object": "embedding", "index": index, "embedding": [0.1, 0.2, 0.3]}
                     for index, _ in enumerate(inputs)],
            "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
        })

    def _send_stream(self, body: Mapping[str, Any]) -> None:
        upstream = self.upstream
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                "created": 1700000000, "model": body.get("model", "fake-model")}
        words = upstream.reply.split(" ")
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": word if index == 0 else " " + word}
                   for index, word in enumerate(words)]
        try:
            for index, delta in enumerate(deltas):
                if upstream.fail_after_chunks is not None and index >= upstream.fail_after_chunks:
                    self._write_event({"error": {"message": "the fake upstream broke the stream",
                                                 "type": "server_error", "param": None,
                                                 "code": None}})
                    self._end_stream()
                    return
                self._write_event({**base, "choices": [
                    {"index": 0, "delta": delta, "finish_reason": None}]})
                if upstream.chunk_delay:
                    time.sleep(upstream.chunk_delay)
            self._write_event({**base, "choices": [
                {"index": 0, "delta": {}, "finish_reason": "stop"}]})
            options = body.get("stream_options") or {}
            if options.get("include_usage"):
                self._write_event({**base, "choices": [], "usage": self._usage(body)})
            self._write_chunk(b"data: [DONE]\n\n")
            self._end_stream()
        except (BrokenPipeError, ConnectionResetError):
            pass  # The proxy went away (its client disconnected); nothing to finish.

    def _write_event(self, payload: Any) -> None:
        self._write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
