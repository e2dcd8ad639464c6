"""The zero-delay mock provider: fixed OpenAI responses served by nginx on loopback.

nginx returns one fixed `chat.completion` body for every POST to
`/v1/chat/completions` (and `/chat/completions`), and one fixed SSE stream of 64
`chat.completion.chunk` events for every POST to `/stream/v1/chat/completions`.
Streaming deployments point their `api_base` at `/stream/v1` because nginx cannot
route on the request body's `stream` flag. The request body is discarded.

When nginx is missing and cannot be installed, `start_python_mock` serves the same
bytes from an aiohttp server (python_mock.py). It is slower than nginx and
competes with the proxy for CPU, so the report notes it, and its figures are only
fit for a smoke run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from procutil import free_port, wait_for_port

logger = logging.getLogger(__name__)

MODEL = "bench-model"
STREAM_CHUNKS = 64
CREATED = 1_700_000_000

COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": CREATED,
    "model": MODEL,
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "Hello from the benchmark mock."},
        "finish_reason": "stop",
    }],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
}


def _chunk(index: int) -> dict[str, object]:
    delta: dict[str, str] = {}
    finish_reason = None
    if index == 0:
        delta = {"role": "assistant", "content": ""}
    elif index < STREAM_CHUNKS - 1:
        delta = {"content": f"token{index} "}
    else:
        finish_reason = "stop"
    chunk: dict[str, object] = {
        "id": "chatcmpl-bench-stream",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    if index == STREAM_CHUNKS - 1:
        chunk["usage"] = {"prompt_tokens": 12, "completion_tokens": STREAM_CHUNKS - 2,
                          "total_tokens": 12 + STREAM_CHUNKS - 2}
    return chunk


def completion_body() -> bytes:
    """Return the fixed chat-completion response body."""
    return json.dumps(COMPLETION, separators=(",", ":")).encode()


def stream_body() -> bytes:
    """Return the fixed SSE stream: 64 chunks, then `data: [DONE]`."""
    events = [f"data: {json.dumps(_chunk(i), separators=(',', ':'))}\n\n"
              for i in range(STREAM_CHUNKS)]
    events.append("data: [DONE]\n\n")
    return "".join(events).encode()


@dataclass
class MockProvider:
    """A running mock: its kind, port and process (for CPU and RSS readings)."""

    kind: str
    """`nginx`, or `python` for the aiohttp fallback."""
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    notes: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """`api_base` for non-streaming deployments."""
        return f"{self.base_url}/v1"

    @property
    def stream_api_base(self) -> str:
        """`api_base` for streaming deployments."""
        return f"{self.base_url}/stream/v1"

    def stop(self) -> None:
        if self.process.poll() is None:
            # nginx stops at once on SIGTERM ("fast shutdown"), closing open connections.
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def nginx_config(workdir: Path, port: int) -> str:
    """Return an nginx configuration that serves the fixed bodies on 127.0.0.1:`port`.

    The bodies are static files under `workdir/static`. nginx rejects a POST to a
    static file with 405, so each endpoint returns 405 and its `error_page` redirects
    internally (as GET) to the file, which goes out with status 200.
    """
    static = workdir / "static"
    temp = workdir / "temp"
    return textwrap.dedent(f"""\
        worker_processes 1;
        daemon off;
        pid {workdir}/nginx.pid;
        error_log {workdir}/error.log warn;
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            client_body_temp_path {temp}/body;
            proxy_temp_path {temp}/proxy;
            fastcgi_temp_path {temp}/fastcgi;
            uwsgi_temp_path {temp}/uwsgi;
            scgi_temp_path {temp}/scgi;
            # The default of 1,000 requests per connection would make the proxies
            # reconnect every few hundred milliseconds under load.
            keepalive_requests 100000000;
            keepalive_timeout 300s;
            server {{
                listen 127.0.0.1:{port};
                root {static};
                location = /v1/chat/completions {{
                    error_page 405 = /internal/completion.json;
                    return 405;
                }}
                location = /chat/completions {{
                    error_page 405 = /internal/completion.json;
                    return 405;
                }}
                location = /stream/v1/chat/completions {{
                    error_page 405 = /internal/stream.sse;
                    return 405;
                }}
                location = /internal/completion.json {{
                    internal;
                    default_type application/json;
                }}
                location = /internal/stream.sse {{
                    internal;
                    types {{ }}
                    default_type text/event-stream;
                    add_header Cache-Control no-cache;
                }}
                location / {{
                    return 404;
                }}
            }}
        }}
        """)


def write_static_files(static: Path) -> None:
    """Write the two fixed bodies where `nginx_config` serves them from."""
    (static / "internal").mkdir(parents=True, exist_ok=True)
    (static / "internal" / "completion.json").write_bytes(completion_body())
    (static / "internal" / "stream.sse").write_bytes(stream_body())


def ensure_nginx(install: bool) -> str | None:
    """Return the nginx binary, installing Debian's package first if allowed and possible."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                        else None)
    if binary or not install:
        return binary
    from procutil import apt_install

    apt_install(["nginx-light"])
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                     else None)


def start_nginx(binary: str) -> MockProvider:
    """Start nginx with its own configuration in a temporary directory."""
    workdir = Path(tempfile.mkdtemp(prefix="hookgate-bench-nginx-"))
    (workdir / "temp").mkdir()
    # The worker drops root privileges to `nobody`, which must reach the temp paths.
    os.chmod(workdir, 0o755)
    os.chmod(workdir / "temp", 0o777)
    write_static_files(workdir / "static")
    for path in [workdir / "static", *(workdir / "static").rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    port = free_port()
    config = workdir / "nginx.conf"
    config.write_text(nginx_config(workdir, port))
    process = subprocess.Popen(
        [binary, "-p", str(workdir), "-c", str(config), "-e", str(workdir / "error.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    mock = MockProvider("nginx", port, process, workdir)
    try:
        wait_for_port(port, process, timeout=10)
    except RuntimeError:
        error_log = (workdir / "error.log").read_text(errors="replace") if (
            workdir / "error.log").exists() else ""
        mock.stop()
        raise RuntimeError(f"nginx failed to start: {error_log.strip()}") from None
    logger.info("nginx mock provider listening on %s", mock.base_url)
    return mock


def start_python_mock() -> MockProvider:
    """Start the aiohttp fallback mock (same bytes as nginx, much lower capacity)."""
    workdir = Path(tempfile.mkdtemp(prefix="hookgate-bench-pymock-"))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("python_mock.py")), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    wait_for_port(port, process, timeout=20)
    mock = MockProvider("python", port, process, workdir,
                        notes=["the aiohttp fallback mock served the provider instead of "
                               "nginx, so its CPU use is part of every figure"])
    logger.info("python mock provider listening on %s", mock.base_url)
    return mock


def start_mock(install: bool, prefer: str = "nginx") -> MockProvider:
    """Start nginx if possible (installing it when `install`), else the Python mock."""
    if prefer == "nginx":
        binary = ensure_nginx(install)
        if binary:
            return start_nginx(binary)
        logger.warning("nginx not found%s; using the Python mock provider",
                       "" if install else " and --no-install given")
    return start_python_mock()
